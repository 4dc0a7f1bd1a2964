import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import yaml from 'js-yaml';
import type { Role } from '../shared/config.js';

/**
 * What the manifests in knative/ ask of each role's container, read from the YAML a user
 * applies (not from the generator), so the container check tests the files that ship:
 * arguments, environment (values, Secret keys, the downward API), port, probes, security
 * context and resources. Pure: reading files is the caller's one side effect.
 */

export interface EnvSecretRef {
  env: string;
  secret: string;
  key: string;
  optional: boolean;
}

export interface RoleContainer {
  role: Role;
  /** `Kind/name` of the object the container came from. */
  source: string;
  args: string[];
  containerPort: number;
  /** Literal values and downward-API fields, resolved. */
  env: Record<string, string>;
  secretRefs: EnvSecretRef[];
  liveness?: string;
  readiness?: string;
  startup?: string;
  runAsUser?: number;
  runAsNonRoot: boolean;
  readOnlyRootFilesystem: boolean;
  allowPrivilegeEscalation: boolean;
  dropCapabilities: string[];
  /** emptyDir mounts (a tmpfs in the check). */
  scratchMounts: string[];
  requests: { memoryBytes?: number; cpu?: number };
  limits: { memoryBytes?: number; cpu?: number };
}

type Obj = Record<string, any>;

const BINARY_SUFFIX: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 };
const DECIMAL_SUFFIX: Record<string, number> = { '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, m: 1e-3 };

/** A Kubernetes quantity ('256Mi', '1G', '250m', '2') as a number of bytes or cores. */
export function parseQuantity(q: string | number | undefined): number | undefined {
  if (q === undefined) return undefined;
  const m = /^([0-9.]+)([A-Za-z]*)$/.exec(String(q).trim());
  const factor = m ? BINARY_SUFFIX[m[2]] ?? DECIMAL_SUFFIX[m[2]] : undefined;
  if (!m || factor === undefined) throw new Error(`not a Kubernetes quantity: '${q}'`);
  return Number(m[1]) * factor;
}

/** Every object in the YAML files of a directory (kustomization.yaml excluded). */
export function loadManifestObjects(dir: string): Obj[] {
  return readdirSync(dir)
    .filter((f) => /\.ya?ml$/.test(f) && !/^kustomization\.ya?ml$/.test(f))
    .sort()
    .flatMap((f) => yaml.loadAll(readFileSync(path.join(dir, f), 'utf8')) as Obj[])
    .filter((o): o is Obj => Boolean(o && typeof o === 'object'));
}

/** The pod template of a Deployment, StatefulSet or Knative Service. */
function podTemplate(o: Obj): Obj | undefined {
  return o.spec?.template;
}

const httpPath = (probe: Obj | undefined) => probe?.httpGet?.path as string | undefined;

/** The first container the manifests give `role` (labelled `edgefl.dev/role`). */
export function roleContainer(objects: Obj[], role: Role, roleLabel = 'edgefl.dev/role'): RoleContainer {
  const owner = objects.find((o) => podTemplate(o)?.metadata?.labels?.[roleLabel] === role && podTemplate(o)?.spec?.containers?.length);
  if (!owner) throw new Error(`no workload labelled ${roleLabel}=${role} in the manifests`);
  const pod = podTemplate(owner)!.spec as Obj;
  const c = pod.containers[0] as Obj;
  const podSec = (pod.securityContext ?? {}) as Obj;
  const sec = { ...podSec, ...(c.securityContext ?? {}) } as Obj;
  const env: Record<string, string> = {};
  const secretRefs: EnvSecretRef[] = [];
  for (const e of (c.env ?? []) as Obj[]) {
    if (e.value !== undefined) env[e.name] = String(e.value);
    else if (e.valueFrom?.secretKeyRef) {
      const r = e.valueFrom.secretKeyRef;
      secretRefs.push({ env: e.name, secret: r.name, key: r.key, optional: Boolean(r.optional) });
    } else if (e.valueFrom?.fieldRef?.fieldPath === 'metadata.namespace') env[e.name] = owner.metadata?.namespace ?? 'default';
    else throw new Error(`${role}: env ${e.name} uses a source the check cannot provide: ${JSON.stringify(e.valueFrom)}`);
  }
  const emptyDirs = new Set(((pod.volumes ?? []) as Obj[]).filter((v) => v.emptyDir).map((v) => v.name));
  return {
    role,
    source: `${owner.kind}/${owner.metadata?.name}`,
    args: (c.args ?? []).map(String),
    containerPort: Number(c.ports?.[0]?.containerPort ?? 8080),
    env,
    secretRefs,
    liveness: httpPath(c.livenessProbe),
    readiness: httpPath(c.readinessProbe),
    startup: httpPath(c.startupProbe),
    runAsUser: sec.runAsUser,
    runAsNonRoot: Boolean(sec.runAsNonRoot),
    readOnlyRootFilesystem: Boolean(sec.readOnlyRootFilesystem),
    allowPrivilegeEscalation: sec.allowPrivilegeEscalation !== false,
    dropCapabilities: sec.capabilities?.drop ?? [],
    scratchMounts: ((c.volumeMounts ?? []) as Obj[]).filter((m) => emptyDirs.has(m.name)).map((m) => m.mountPath),
    requests: { memoryBytes: parseQuantity(c.resources?.requests?.memory), cpu: parseQuantity(c.resources?.requests?.cpu) },
    limits: { memoryBytes: parseQuantity(c.resources?.limits?.memory), cpu: parseQuantity(c.resources?.limits?.cpu) },
  };
}

/**
 * The container's full environment: the manifests' literals plus each Secret key from
 * `secretValue` (the check makes fresh values, as a per-install secret would be), then
 * `overrides` for what only a cluster provides (PORT per container on a shared host network,
 * trainer URLs instead of cluster discovery). Optional keys without a value stay unset.
 */
export function containerEnv(c: RoleContainer, secretValue: (ref: EnvSecretRef) => string | undefined, overrides: Record<string, string> = {}): Record<string, string> {
  const env = { ...c.env };
  for (const ref of c.secretRefs) {
    const v = secretValue(ref);
    if (v === undefined && !ref.optional) throw new Error(`${c.role}: no value for required Secret key ${ref.secret}/${ref.key} (${ref.env})`);
    if (v !== undefined) env[ref.env] = v;
  }
  return { ...env, ...overrides };
}

/**
 * `podman run` flags for the container's security context and resources, as the kubelet
 * would apply them: user, no new privileges, dropped capabilities, read-only root with only
 * the manifests' emptyDirs writable, memory and CPU limits.
 */
export function securityFlags(c: RoleContainer): string[] {
  const flags: string[] = [];
  if (c.runAsUser !== undefined) flags.push('--user', `${c.runAsUser}:${c.runAsUser}`);
  if (!c.allowPrivilegeEscalation) flags.push('--security-opt', 'no-new-privileges');
  for (const cap of c.dropCapabilities) flags.push('--cap-drop', cap.toLowerCase() === 'all' ? 'all' : cap);
  // Kubernetes gives a read-only root no writable /tmp of its own: only the declared volumes.
  if (c.readOnlyRootFilesystem) flags.push('--read-only', '--read-only-tmpfs=false');
  for (const mount of c.scratchMounts) flags.push('--tmpfs', `${mount}:rw,mode=1777`);
  if (c.limits.memoryBytes) flags.push('--memory', String(Math.round(c.limits.memoryBytes)), '--memory-swap', String(Math.round(c.limits.memoryBytes)));
  if (c.limits.cpu) flags.push('--cpus', String(c.limits.cpu));
  return flags;
}
