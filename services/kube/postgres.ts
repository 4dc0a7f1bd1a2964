/**
 * The bundled PostgreSQL: a single-replica StatefulSet with its PVC and a headless Service.
 * Runs as the image's own non-root user under the `restricted` Pod Security Standard, with a
 * startupProbe so a long crash recovery is not killed by liveness. Its password lives only in
 * the edgefl-postgres Secret, and the image applies it only when it initialises an empty volume
 * (rotation: knative/README.md).
 */
import { Service as CoreService } from 'kubernetes-models/v1';
import { StatefulSet } from 'kubernetes-models/apps/v1';
import { LABELS, NAMES, PART_OF, POSTGRES_IMAGE, POSTGRES_UID, RESOURCES, SECRET_KEYS } from './constants.js';
import type { ResolvedOptions } from './options.js';
import { containerSecurity, envSecret, envValue, labels } from './workloads.js';

const pgIsReady = { exec: { command: ['sh', '-c', 'pg_isready -U "$POSTGRES_USER" -d "$POSTGRES_DB" -h 127.0.0.1'] }, timeoutSeconds: 5 };

export function postgresObjects(opts: ResolvedOptions) {
  const podLabels = labels('postgres');
  const selector = { [LABELS.partOf]: PART_OF, [LABELS.role]: 'postgres' };
  return [
    new CoreService({
      metadata: { name: NAMES.postgres, namespace: opts.namespace, labels: podLabels },
      spec: {
        // Headless: the StatefulSet's stable pod DNS, and the short name still resolves to it.
        clusterIP: 'None',
        selector,
        ports: [{ name: 'postgres', port: 5432, targetPort: 'postgres' }],
      },
    }),
    new StatefulSet({
      metadata: { name: NAMES.postgres, namespace: opts.namespace, labels: podLabels },
      spec: {
        serviceName: NAMES.postgres,
        replicas: 1,
        selector: { matchLabels: selector },
        template: {
          metadata: { labels: podLabels },
          spec: {
            automountServiceAccountToken: false,
            // The image's entrypoint runs initdb as whichever uid it gets; fsGroup makes the PVC writable for it.
            securityContext: { runAsNonRoot: true, runAsUser: POSTGRES_UID, runAsGroup: POSTGRES_UID, fsGroup: POSTGRES_UID, seccompProfile: { type: 'RuntimeDefault' } },
            containers: [
              {
                name: 'postgres',
                image: POSTGRES_IMAGE,
                ports: [{ name: 'postgres', containerPort: 5432 }],
                env: [
                  envSecret('POSTGRES_USER', NAMES.postgresSecret, SECRET_KEYS.postgresUser),
                  envSecret('POSTGRES_PASSWORD', NAMES.postgresSecret, SECRET_KEYS.postgresPassword),
                  envSecret('POSTGRES_DB', NAMES.postgresSecret, SECRET_KEYS.postgresDb),
                  // A fresh volume has lost+found at its root, which initdb refuses; use a subdir.
                  envValue('PGDATA', '/var/lib/postgresql/data/pgdata'),
                ],
                resources: RESOURCES.postgres,
                // Crash recovery of a large WAL can take minutes: liveness only starts once this passed.
                startupProbe: { ...pgIsReady, periodSeconds: 5, failureThreshold: 120 },
                readinessProbe: { ...pgIsReady, periodSeconds: 10 },
                livenessProbe: { ...pgIsReady, periodSeconds: 20, failureThreshold: 3 },
                securityContext: { ...containerSecurity, runAsUser: POSTGRES_UID },
                volumeMounts: [{ name: 'data', mountPath: '/var/lib/postgresql/data' }],
              },
            ],
          },
        },
        volumeClaimTemplates: [
          {
            metadata: { name: 'data', labels: { [LABELS.partOf]: PART_OF } },
            spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
          },
        ],
      },
    }),
  ];
}
