/**
 * The cross-checks every rendered set of edgefl manifests must pass, shared by the generator
 * tests (test/knative-manifests.test.ts) and the checked-in tree's tests (test/knative-kustomize.test.ts).
 */
import { expect } from 'vitest';
import { ENV } from '../../services/shared/config.js';
import { CONTAINER_PORT, EVENTING, HEALTH_ROUTES, KNATIVE_TUNING, LABELS, NAMES, RESOURCES, ANNOTATIONS } from '../../services/kube/constants.js';
import { SECRET_NAMES } from '../../services/kube/secrets-job.js';
import { desiredSecrets } from '../../services/kube/secrets-init.js';
import { restrictedViolations } from './pod-security.js';

export type Obj = Record<string, any>;

/** Env names the workloads may use besides ENV: those the postgres image and libpq define. */
const STANDARD_ENV = new Set(['POSTGRES_USER', 'POSTGRES_PASSWORD', 'POSTGRES_DB', 'PGDATA', 'PGPASSWORD']);
/** The Secrets the secrets-init Job creates for `nodes` edge nodes: every secretKeyRef must point into one of them. */
const generatedSecrets = (nodes: number) => new Map(desiredSecrets(undefined, nodes).map((s) => [s.name, Object.keys(s.stringData)]));
const ENV_NAMES = new Set<string>(Object.values(ENV));


export function podSpecOf(o: Obj): Obj | undefined {
  if (o.kind === 'Deployment' || o.kind === 'StatefulSet' || o.kind === 'Job') return o.spec?.template?.spec;
  if (o.apiVersion === 'serving.knative.dev/v1' && o.kind === 'Service') return o.spec?.template?.spec;
  return undefined;
}

function podLabelsOf(o: Obj): Record<string, string> {
  return o.spec?.template?.metadata?.labels ?? {};
}

const matches = (selector: Record<string, string>, labels: Record<string, string>) =>
  Object.entries(selector).every(([k, v]) => labels[k] === v);

/** The cross-checks every rendered set of objects must pass. */
export function crossCheck(objects: Obj[], nodes: number, opts: { eventing: boolean; servingMinScale?: number; trainerTimeoutSeconds?: number }) {
  // No credentials ship in the manifests: the Job generates them per install.
  expect(objects.filter((o) => o.kind === 'Secret')).toEqual([]);
  expect(JSON.stringify(objects)).not.toMatch(/CHANGE-ME/i);
  const workloads = objects.filter((o) => podSpecOf(o));
  expect(workloads.length).toBeGreaterThan(0);
  const GENERATED_SECRETS = generatedSecrets(nodes);

  for (const w of workloads) {
    const spec = podSpecOf(w)!;
    const isKnative = w.apiVersion === 'serving.knative.dev/v1';
    for (const c of spec.containers as Obj[]) {
      for (const e of (c.env ?? []) as Obj[]) {
        // Env names come from ENV (or are the postgres image's own), so a rename in config.ts shows up here.
        expect(ENV_NAMES.has(e.name) || STANDARD_ENV.has(e.name), `${w.metadata.name}: env ${e.name} is not in ENV`).toBe(true);
        if (isKnative) expect(e.name, 'Knative reserves PORT').not.toBe(ENV.port);
        const ref = e.valueFrom?.secretKeyRef;
        if (ref) {
          expect(GENERATED_SECRETS.get(ref.name), `${w.metadata.name}: env ${e.name} references Secret ${ref.name}, which nothing creates`).toContain(ref.key);
        }
      }
      const names = ((c.env ?? []) as Obj[]).map((e) => e.name);
      expect(new Set(names).size, `${w.metadata.name}: duplicate env`).toBe(names.length);
    }

    const role = w.metadata.labels?.[LABELS.role] as string | undefined;
    expect(podLabelsOf(w)[LABELS.role]).toBe(role);
    // `restricted` Pod Security Standard, and a service-account token only where the API is used.
    expect(restrictedViolations(spec), `${w.metadata.name} violates the restricted PSS`).toEqual([]);
    const needsApi = role === 'aggregator' || role === 'secrets-init';
    expect(spec.automountServiceAccountToken, `${w.metadata.name}: automountServiceAccountToken`).toBe(needsApi);
    for (const c of spec.containers as Obj[]) {
      expect(c.image, `${w.metadata.name}: mutable image tag`).not.toMatch(/:latest$/);
      expect(c.image.split('/').pop(), `${w.metadata.name}: image without version`).toMatch(/[:@]/);
    }
    if (role === 'trainer' || role === 'serving' || role === 'aggregator') {
      const c = spec.containers[0];
      expect(c.ports.map((p: Obj) => p.containerPort)).toEqual([CONTAINER_PORT]);
      expect(c.livenessProbe.httpGet).toEqual({ path: HEALTH_ROUTES[role].live, port: CONTAINER_PORT });
      expect(c.readinessProbe.httpGet).toEqual({ path: HEALTH_ROUTES[role].ready, port: CONTAINER_PORT });
      // Knative probes aggressively only with periodSeconds 0/unset; a kubelet probe needs a period.
      if (isKnative) expect(c.readinessProbe.periodSeconds ?? 0, `${w.metadata.name}: readiness periodSeconds`).toBe(0);
      else expect(c.readinessProbe.periodSeconds).toBeGreaterThan(0);
      expect(c.resources).toEqual(RESOURCES[role]);
      // edgefl listens on loopback unless told otherwise; a pod's traffic arrives on its own IP.
      expect((c.env as Obj[]).find((e) => e.name === ENV.host)?.value, `${w.metadata.name}: ${ENV.host}`).toBe('0.0.0.0');
      expect(c.image).toBe(workloads.find((x) => x.metadata.labels?.[LABELS.role] === 'aggregator')!.spec.template.spec.containers[0].image);
    }
    if (role === 'aggregator') {
      const env = Object.fromEntries((spec.containers[0].env as Obj[]).map((e) => [e.name, e.value]));
      expect(env[ENV.port]).toBe(String(CONTAINER_PORT));
      expect(env[ENV.discovery]).toBe('kube');
      expect(env[ENV.nodes]).toBe(String(nodes));
      // A run's round may not outlast the trainer's Knative request timeout.
      expect(env[ENV.maxRoundTimeoutS]).toBe(String(opts.trainerTimeoutSeconds ?? KNATIVE_TUNING.trainerTimeoutSeconds));
    }

    if (w.kind === 'Deployment' || w.kind === 'StatefulSet') {
      expect(matches(w.spec.selector.matchLabels, podLabelsOf(w)), `${w.metadata.name}: selector does not match its pods`).toBe(true);
    }
  }

  // Core Services select exactly the pods of one workload; the StatefulSet's serviceName is headless.
  for (const svc of objects.filter((o) => o.apiVersion === 'v1' && o.kind === 'Service')) {
    const targets = workloads.filter((w) => w.apiVersion !== 'serving.knative.dev/v1' && matches(svc.spec.selector, podLabelsOf(w)));
    expect(targets.length, `Service ${svc.metadata.name} selects ${targets.length} workloads`).toBe(1);
    const ports = (targets[0]!.spec.template.spec.containers as Obj[]).flatMap((c) => c.ports.map((p: Obj) => p.name));
    for (const p of svc.spec.ports) expect(ports).toContain(p.targetPort);
  }
  const sts = objects.find((o) => o.kind === 'StatefulSet')!;
  expect(objects.find((o) => o.kind === 'Service' && o.apiVersion === 'v1' && o.metadata.name === sts.spec.serviceName)?.spec.clusterIP).toBe('None');
  expect(sts.spec.volumeClaimTemplates).toHaveLength(1);

  // Edge nodes: exactly one trainer and one serving per node, pinned to the matching machine.
  const ksvcs = objects.filter((o) => o.apiVersion === 'serving.knative.dev/v1' && o.kind === 'Service');
  expect(ksvcs).toHaveLength(2 * nodes);
  for (let node = 0; node < nodes; node++) {
    for (const role of ['trainer', 'serving'] as const) {
      const name = role === 'trainer' ? NAMES.trainer(node) : NAMES.serving(node);
      const svc = ksvcs.find((o) => o.metadata.name === name);
      expect(svc, `missing ${name}`).toBeDefined();
      const spec = svc!.spec.template.spec;
      const env = Object.fromEntries((spec.containers[0].env as Obj[]).map((e) => [e.name, e.value]));
      expect(svc!.metadata.labels[LABELS.role]).toBe(role);
      expect(svc!.metadata.labels[LABELS.nodeId]).toBe(String(node));
      expect(podLabelsOf(svc!)[LABELS.nodeId]).toBe(String(node));
      expect(env[ENV.nodeId]).toBe(String(node));
      expect(env[ENV.nodes]).toBe(String(nodes));
      expect(spec.nodeSelector).toEqual({ [LABELS.edgeNode]: env[ENV.nodeId] });
      expect(spec.tolerations).toContainEqual({ key: LABELS.edgeTaint, operator: 'Exists', effect: 'NoSchedule' });
      const ann = svc!.spec.template.metadata.annotations;
      if (role === 'trainer') {
        expect(spec.containerConcurrency).toBe(1);
        const timeout = opts.trainerTimeoutSeconds ?? KNATIVE_TUNING.trainerTimeoutSeconds;
        expect(spec.timeoutSeconds).toBe(timeout);
        // Unset, Knative would cut a silent training request at revision-response-start-timeout-seconds (300).
        expect(spec.responseStartTimeoutSeconds).toBe(timeout);
        expect(ann[ANNOTATIONS.minScale]).toBe('0');
        expect(svc!.metadata.labels[LABELS.visibility]).toBe('cluster-local');
        expect(spec.containers[0].args).toEqual(['trainer']);
      } else {
        expect(spec.containerConcurrency).toBe(KNATIVE_TUNING.servingContainerConcurrency);
        expect(ann[ANNOTATIONS.minScale]).toBe(String(opts.servingMinScale ?? 0));
        expect(spec.containers[0].args).toEqual(['serve']);
      }
    }
  }

  // RBAC: discovery only lists Knative Services, warm-aware selection their pods; bound to the account the aggregator runs as.
  const role = objects.find((o) => o.kind === 'Role' && o.metadata.name === NAMES.aggregator)!;
  expect(role.rules).toEqual([
    { apiGroups: ['serving.knative.dev'], resources: ['services'], verbs: ['list'] },
    { apiGroups: [''], resources: ['pods'], verbs: ['list'] },
  ]);
  const binding = objects.find((o) => o.kind === 'RoleBinding' && o.metadata.name === NAMES.aggregator)!;
  const agg = objects.find((o) => o.kind === 'Deployment')!;
  checkSecretsInit(objects, GENERATED_SECRETS);
  checkPostgres(sts);
  expect(binding.roleRef.name).toBe(role.metadata.name);
  expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: agg.spec.template.spec.serviceAccountName, namespace: agg.metadata.namespace }]);
  expect(objects.some((o) => o.kind === 'ServiceAccount' && o.metadata.name === agg.spec.template.spec.serviceAccountName)).toBe(true);

  const triggers = objects.filter((o) => o.kind === 'Trigger');
  if (!opts.eventing) {
    expect(triggers).toHaveLength(0);
    expect(objects.some((o) => o.kind === 'Broker')).toBe(false);
    return;
  }
  expect(objects.filter((o) => o.kind === 'Broker')).toHaveLength(1);
  expect(triggers).toHaveLength(2 * nodes + 1);
  for (let node = 0; node < nodes; node++) {
    const forNode = (type: string) => triggers.find((o) => o.spec.filter.attributes[EVENTING.nodeAttribute] === String(node) && o.spec.filter.attributes.type === type);
    // Event-driven inference: the node's serving function, retried (results are stored once per request id).
    const inference = forNode(EVENTING.inferenceType);
    expect(inference?.spec.subscriber.ref).toEqual({ apiVersion: 'serving.knative.dev/v1', kind: 'Service', name: NAMES.serving(node) });
    expect(inference!.spec.delivery.retry).toBeGreaterThanOrEqual(3);
    const t = forNode(EVENTING.trainType);
    expect(t, `no trigger for node ${node}`).toBeDefined();
    expect(t!.spec.filter.attributes.type).toBe(EVENTING.trainType);
    expect(t!.spec.subscriber.ref).toEqual({ apiVersion: 'serving.knative.dev/v1', kind: 'Service', name: NAMES.trainer(node) });
    // Bounded retries, a timeout as long as training may take, and a dead-letter sink the aggregator consumes.
    const d = t!.spec.delivery;
    expect(d.retry).toBeGreaterThanOrEqual(2);
    expect(d.backoffPolicy).toBe('exponential');
    expect(d.timeout).toBe(`PT${opts.trainerTimeoutSeconds ?? KNATIVE_TUNING.trainerTimeoutSeconds}S`);
    expect(d.deadLetterSink).toEqual({ ref: { apiVersion: 'v1', kind: 'Service', name: NAMES.aggregator }, uri: EVENTING.deadLetterPath });
  }
  const broker = objects.find((o) => o.kind === 'Broker')!;
  expect(broker.metadata.annotations['eventing.knative.dev/broker.class']).toBe(EVENTING.defaultBrokerClass);
  for (const t of triggers) {
    // CloudEvents attribute names: lowercase a-z/0-9, at most 20 characters.
    for (const attr of Object.keys(t.spec.filter.attributes)) expect(attr).toMatch(/^[a-z0-9]{1,20}$/);
    expect(t.spec.broker).toBe(EVENTING.broker);
  }
  const ready = triggers.find((o) => o.spec.filter.attributes.type === EVENTING.updateReadyType)!;
  expect(ready.spec.subscriber).toEqual({ ref: { apiVersion: 'v1', kind: 'Service', name: NAMES.aggregator }, uri: EVENTING.aggregatorPath });
  expect(objects.some((o) => o.apiVersion === 'v1' && o.kind === 'Service' && o.metadata.name === NAMES.aggregator)).toBe(true);
  const binding2 = objects.find((o) => o.kind === 'SinkBinding')!;
  expect(binding2.spec.subject).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', name: agg.metadata.name });
}

/** The Job that makes per-install Secrets: only `create` and `get` on exactly those names. */
function checkSecretsInit(objects: Obj[], GENERATED_SECRETS: Map<string, string[]>) {
  const job = objects.find((o) => o.kind === 'Job' && o.metadata.name === NAMES.secretsInit)!;
  expect(job, 'secrets-init Job').toBeDefined();
  expect(job.spec.ttlSecondsAfterFinished).toBeGreaterThan(0);
  const spec = job.spec.template.spec;
  expect(spec.containers[0].command).toEqual(['node', 'dist/services/kube/secrets-init.js']);
  // The Job makes one Secret per edge node: it must be told how many there are.
  expect(spec.containers[0].env).toContainEqual({ name: ENV.nodes, value: String(GENERATED_SECRETS.size - SECRET_NAMES.length) });
  const role = objects.find((o) => o.kind === 'Role' && o.metadata.name === NAMES.secretsInit)!;
  expect(role.rules).toEqual([
    { apiGroups: [''], resources: ['secrets'], verbs: ['create'] },
    { apiGroups: [''], resources: ['secrets'], resourceNames: [...GENERATED_SECRETS.keys()], verbs: ['get'] },
  ]);
  const binding = objects.find((o) => o.kind === 'RoleBinding' && o.metadata.name === NAMES.secretsInit)!;
  expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: spec.serviceAccountName, namespace: job.metadata.namespace }]);
  const sa = objects.find((o) => o.kind === 'ServiceAccount' && o.metadata.name === spec.serviceAccountName)!;
  expect(sa.automountServiceAccountToken).toBe(false);
}

function checkPostgres(sts: Obj) {
  const c = sts.spec.template.spec.containers[0];
  // A startupProbe holds liveness off during a long crash recovery (here: up to 10 minutes).
  expect(c.startupProbe.periodSeconds * c.startupProbe.failureThreshold).toBeGreaterThanOrEqual(600);
  expect(c.livenessProbe.initialDelaySeconds ?? 0).toBe(0);
  expect(sts.spec.template.spec.securityContext.fsGroup).toBe(sts.spec.template.spec.securityContext.runAsUser);
  // The password is read from edgefl-postgres only; nothing else holds a copy.
  const pw = (c.env as Obj[]).find((e) => e.name === 'POSTGRES_PASSWORD')!.valueFrom.secretKeyRef;
  expect(pw).toEqual({ name: NAMES.postgresSecret, key: 'password' });
  const databaseSecret = desiredSecrets().find((s) => s.name === NAMES.databaseSecret)!;
  expect(new URL(databaseSecret.stringData.url!).password).toBe('');
}

