/**
 * Kubernetes/Knative manifests for edgefl, built as typed `kubernetes-models` objects.
 *
 * Why code instead of hand-written YAML: the env variable names come from `ENV`, the
 * health routes, labels and resources from ./constants.ts, and every object is schema-validated
 * before it is written, so a rename in the services cannot silently break a deployment.
 * `knative/` in the repository is the rendered default (3 nodes, see ./layout.ts); a test
 * fails when it drifts from what this module produces.
 *
 * Note: `kubernetes-models` and the `@kubernetes-models/*` packages are devDependencies, so this
 * module is a build-/dev-time tool; the CLI imports it lazily (see services/cli/kube-commands.ts).
 */
import * as yaml from 'js-yaml';
import { ConfigMap, Namespace, Secret, Service as CoreService, ServiceAccount } from 'kubernetes-models/v1';
import { Deployment, StatefulSet } from 'kubernetes-models/apps/v1';
import { Job } from 'kubernetes-models/batch/v1';
import { Role, RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { Service as KnativeService } from '@kubernetes-models/knative/serving.knative.dev/v1';
import { Broker, Trigger } from '@kubernetes-models/knative/eventing.knative.dev/v1';
import { SinkBinding } from '@kubernetes-models/knative/sources.knative.dev/v1';
import { PodMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import { brokerObjects, sinkBindingObjects, triggerObjects } from './eventing.js';
import { dashboardConfigMapObjects, podMonitorObjects } from './observability.js';
import { resolveOptions, type ManifestOptions } from './options.js';
import { secretsInitObjects } from './secrets-job.js';
import { postgresObjects } from './postgres.js';
import { aggregatorObjects, edgeNodeObjects, namespaceObjects } from './workloads.js';

export * from './constants.js';
export * from './options.js';
export { renderKnativeFiles, isGeneratedPath, listGeneratedFiles, writeKnativeDir, type ManifestFile } from './layout.js';

/** apiVersion/kind → model class, for validation of generated and checked-in objects. */
export const MODEL_CLASSES: Record<string, { new (data: any): { validate(): void } }> = {
  'v1/Namespace': Namespace,
  'v1/Secret': Secret,
  'v1/ConfigMap': ConfigMap,
  'v1/Service': CoreService,
  'v1/ServiceAccount': ServiceAccount,
  'apps/v1/Deployment': Deployment,
  'apps/v1/StatefulSet': StatefulSet,
  'batch/v1/Job': Job,
  'rbac.authorization.k8s.io/v1/Role': Role,
  'rbac.authorization.k8s.io/v1/RoleBinding': RoleBinding,
  'serving.knative.dev/v1/Service': KnativeService,
  'eventing.knative.dev/v1/Broker': Broker,
  'eventing.knative.dev/v1/Trigger': Trigger,
  'sources.knative.dev/v1/SinkBinding': SinkBinding,
  'monitoring.coreos.com/v1/PodMonitor': PodMonitor,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
};

/** Throws (with the object's kind/name) when `obj` does not match its schema. */
export function validateObject(obj: { apiVersion?: string; kind?: string; metadata?: { name?: string } }): void {
  const key = `${obj.apiVersion}/${obj.kind}`;
  const Model = MODEL_CLASSES[key];
  if (!Model) throw new Error(`no schema known for ${key}`);
  try {
    new Model(obj).validate();
  } catch (err) {
    throw new Error(`${key} ${obj.metadata?.name ?? '<unnamed>'} is invalid: ${(err as Error).message}`);
  }
}

function plain(models: object[]): object[] {
  // JSON round-trip drops undefined fields and the model classes, leaving exactly what gets applied.
  return models.map((m) => {
    const obj = JSON.parse(JSON.stringify(m));
    validateObject(obj);
    return obj;
  });
}

/** Every object group, validated; ./layout.ts decides which file and component each lands in. */
export interface Parts {
  namespace: object[];
  secretsInit: object[];
  postgres: object[];
  edgeNodes: object[][];
  aggregator: object[];
  broker: object[];
  triggers: object[];
  sinkBinding: object[];
  podMonitors: object[];
  dashboard: object[];
}

export function buildParts(options: ManifestOptions): Parts {
  const opts = resolveOptions(options);
  const edgeNodes: object[][] = [];
  for (let node = 0; node < opts.nodes; node++) edgeNodes.push(plain(edgeNodeObjects(opts, node)));
  return {
    namespace: plain(namespaceObjects(opts)),
    secretsInit: plain(secretsInitObjects(opts)),
    postgres: plain(postgresObjects(opts)),
    edgeNodes,
    aggregator: plain(aggregatorObjects(opts)),
    broker: plain(brokerObjects(opts)),
    triggers: plain(triggerObjects(opts)),
    sinkBinding: plain(sinkBindingObjects(opts)),
    podMonitors: plain(podMonitorObjects(opts)),
    dashboard: plain(dashboardConfigMapObjects(opts)),
  };
}

/**
 * All objects for a deployment, each already validated against its schema: the base plus the
 * components asked for. The same composition `kustomize build` makes of base/ + components/.
 */
export function renderManifests(opts: ManifestOptions): object[] {
  const p = buildParts(opts);
  const out = [...p.namespace, ...p.secretsInit, ...p.postgres, ...p.edgeNodes.flat(), ...p.aggregator];
  if (opts.eventing) out.push(...p.broker, ...p.triggers, ...p.sinkBinding);
  if (opts.observability) out.push(...p.podMonitors, ...p.dashboard);
  return out;
}

/** Multi-document YAML. */
export function toYaml(objects: object[]): string {
  return objects
    .map((obj) => yaml.dump(JSON.parse(JSON.stringify(obj)), { noRefs: true, lineWidth: -1 }))
    .join('---\n');
}

/** `registry/name:tag` → `registry/name` (what a kustomize `images:` entry matches on). */
export function imageName(image: string): string {
  const at = image.indexOf('@');
  const noDigest = at >= 0 ? image.slice(0, at) : image;
  const colon = noDigest.lastIndexOf(':');
  return colon > noDigest.lastIndexOf('/') ? noDigest.slice(0, colon) : noDigest;
}
