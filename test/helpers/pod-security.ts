/**
 * The checks of the Kubernetes `restricted` Pod Security Standard (v1.25+) that a pod spec can
 * fail on its own, so a test can say which rule a manifest breaks without a cluster.
 */
type Obj = Record<string, any>;

const ALLOWED_VOLUMES = new Set(['configMap', 'csi', 'downwardAPI', 'emptyDir', 'ephemeral', 'persistentVolumeClaim', 'projected', 'secret']);
const ALLOWED_SECCOMP = new Set(['RuntimeDefault', 'Localhost']);

export function restrictedViolations(spec: Obj): string[] {
  const out: string[] = [];
  const pod = spec.securityContext ?? {};
  for (const host of ['hostNetwork', 'hostPID', 'hostIPC']) if (spec[host]) out.push(`${host} is set`);
  for (const v of (spec.volumes ?? []) as Obj[]) {
    const type = Object.keys(v).find((k) => k !== 'name');
    if (!type || !ALLOWED_VOLUMES.has(type)) out.push(`volume ${v.name} has type ${type}`);
  }
  for (const c of [...(spec.initContainers ?? []), ...(spec.containers ?? [])] as Obj[]) {
    const sc = c.securityContext ?? {};
    const name = `container ${c.name}`;
    if (sc.privileged) out.push(`${name} is privileged`);
    if (sc.allowPrivilegeEscalation !== false) out.push(`${name} does not set allowPrivilegeEscalation: false`);
    if (!(sc.runAsNonRoot ?? pod.runAsNonRoot)) out.push(`${name} does not run as non-root`);
    if ((sc.runAsUser ?? pod.runAsUser) === 0) out.push(`${name} runs as uid 0`);
    if (!ALLOWED_SECCOMP.has((sc.seccompProfile ?? pod.seccompProfile)?.type)) out.push(`${name} has no RuntimeDefault/Localhost seccomp profile`);
    if (!(sc.capabilities?.drop ?? []).includes('ALL')) out.push(`${name} does not drop ALL capabilities`);
    const added = (sc.capabilities?.add ?? []).filter((cap: string) => cap !== 'NET_BIND_SERVICE');
    if (added.length) out.push(`${name} adds capabilities ${added.join(',')}`);
  }
  return out;
}
