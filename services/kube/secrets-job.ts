/**
 * The Job that generates per-install Secrets (services/kube/secrets-init.ts) and the least
 * privilege it needs: `create` on Secrets (RBAC cannot narrow create by name) and `get` on
 * exactly the three edgefl Secrets. It cannot list, update or delete anything.
 */
import { ServiceAccount } from 'kubernetes-models/v1';
import { Job } from 'kubernetes-models/batch/v1';
import { Role, RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { ENV } from '../shared/config.js';
import { NAMES, NODE_UID } from './constants.js';
import type { ResolvedOptions } from './options.js';
import { containerSecurity, labels } from './workloads.js';

/** Where the compiled init program sits in the image (WORKDIR /app). */
export const SECRETS_INIT_COMMAND = ['node', 'dist/services/kube/secrets-init.js'];

export const SECRET_NAMES = [NAMES.appSecret, NAMES.postgresSecret, NAMES.databaseSecret];

/** Every Secret the Job may read: the shared three and each edge node's own. */
export const secretNames = (nodes: number): string[] => [...SECRET_NAMES, ...Array.from({ length: nodes }, (_, i) => NAMES.nodeSecret(i))];

export function secretsInitObjects(opts: ResolvedOptions) {
  const name = NAMES.secretsInit;
  const meta = { name, namespace: opts.namespace, labels: labels('secrets-init') };
  return [
    new ServiceAccount({ metadata: meta, automountServiceAccountToken: false }),
    new Role({
      metadata: meta,
      rules: [
        { apiGroups: [''], resources: ['secrets'], verbs: ['create'] },
        { apiGroups: [''], resources: ['secrets'], resourceNames: secretNames(opts.nodes), verbs: ['get'] },
      ],
    }),
    new RoleBinding({
      metadata: meta,
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name },
      subjects: [{ kind: 'ServiceAccount', name, namespace: opts.namespace }],
    }),
    new Job({
      metadata: meta,
      spec: {
        backoffLimit: 6,
        // Gone after 10 minutes, so the next `kubectl apply -k` (e.g. with a new image, which a
        // Job's immutable template would refuse) creates and runs it again; reruns are no-ops.
        ttlSecondsAfterFinished: 600,
        template: {
          metadata: { labels: labels('secrets-init') },
          spec: {
            serviceAccountName: name,
            // The ServiceAccount mounts no token by default; only this pod opts in.
            automountServiceAccountToken: true,
            restartPolicy: 'Never',
            securityContext: { runAsNonRoot: true, runAsUser: NODE_UID, seccompProfile: { type: 'RuntimeDefault' } },
            containers: [
              {
                name: 'secrets-init',
                image: opts.image,
                command: SECRETS_INIT_COMMAND,
                env: [{ name: ENV.namespace, valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } }, { name: ENV.nodes, value: String(opts.nodes) }],
                resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { cpu: '500m', memory: '128Mi' } },
                securityContext: { ...containerSecurity, runAsUser: NODE_UID, readOnlyRootFilesystem: true },
              },
            ],
          },
        },
      },
    }),
  ];
}
