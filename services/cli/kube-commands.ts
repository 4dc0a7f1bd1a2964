/**
 * `edgefl manifests …` and `edgefl status --kube`. The dispatcher (services/cli/edgefl.ts)
 * calls these; both return an exit code instead of exiting so they stay testable.
 *
 * Both heavy dependencies are imported lazily: the manifest generator needs the
 * kubernetes-models devDependencies (absent from the production image), and
 * @kubernetes/client-node v2 cannot load on Node < 22.19. A static import of either would
 * break every other `edgefl` command.
 */
import { parseArgs } from 'node:util';
import { ENV } from '../shared/config.js';
import { DEFAULT_IMAGE, DEFAULT_NAMESPACE, DEFAULT_NODES } from '../kube/constants.js';

export interface CommandIO {
  stdout: { write(chunk: string): unknown };
  stderr: { write(chunk: string): unknown };
}

const defaultIO: CommandIO = { stdout: process.stdout, stderr: process.stderr };

const MANIFESTS_USAGE = `Usage: edgefl manifests [--nodes N] [--image IMG] [--namespace NS] [--eventing]
                        [--serving-min-scale N] [--write DIR]

Renders the Kubernetes/Knative manifests. Without --write, prints multi-document YAML
(with --eventing: including Broker, Triggers and SinkBinding). With --write DIR, (re)generates
the kustomize tree (base/, overlays/eventing, overlays/keep-warm); --eventing is implied there.

  --nodes N                number of edge nodes (default ${DEFAULT_NODES})
  --image IMG              container image (default ${DEFAULT_IMAGE})
  --namespace NS           namespace (default ${DEFAULT_NAMESPACE})
  --eventing               include the Knative Eventing objects
  --serving-min-scale N    serving min-scale: 0 scales to zero (default), 1 keeps one pod warm
  --write DIR              write files into DIR instead of printing
`;

const STATUS_USAGE = `Usage: edgefl status --kube [--namespace NS] [--json]

Shows each edge node's trainer and serving Knative Service: readiness, latest ready
revision and current pods. Uses $KUBECONFIG / ~/.kube/config (or the in-cluster account).

  --namespace NS   namespace (default $${ENV.namespace} or ${DEFAULT_NAMESPACE})
  --json           print JSON instead of a table
`;

class UsageError extends Error {}

function intFlag(name: string, raw: string | undefined, fallback: number, min: number): number {
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < min) throw new UsageError(`--${name} must be an integer >= ${min}; got '${raw}'`);
  return Number(raw);
}

export async function runManifestsCommand(argv: string[], io: CommandIO = defaultIO): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      allowPositionals: false,
      options: {
        nodes: { type: 'string' },
        image: { type: 'string' },
        namespace: { type: 'string' },
        eventing: { type: 'boolean', default: false },
        'serving-min-scale': { type: 'string' },
        write: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (err) {
    io.stderr.write(`${(err as Error).message}\n\n${MANIFESTS_USAGE}`);
    return 2;
  }
  if (values.help) {
    io.stdout.write(MANIFESTS_USAGE);
    return 0;
  }
  try {
    const opts = {
      nodes: intFlag('nodes', values.nodes, DEFAULT_NODES, 1),
      image: values.image ?? DEFAULT_IMAGE,
      namespace: values.namespace ?? DEFAULT_NAMESPACE,
      servingMinScale: intFlag('serving-min-scale', values['serving-min-scale'], 0, 0),
    };
    let manifests: typeof import('../kube/manifests.js');
    try {
      manifests = await import('../kube/manifests.js');
    } catch (err) {
      io.stderr.write(
        `edgefl manifests needs the dev dependencies kubernetes-models and @kubernetes-models/knative ` +
          `(run it from a development checkout, not the production image): ${(err as Error).message}\n`,
      );
      return 1;
    }
    if (values.write) {
      const written = await manifests.writeKnativeDir(values.write, opts);
      io.stderr.write(`wrote ${written.length} files to ${values.write}\n`);
    } else {
      io.stdout.write(manifests.toYaml(manifests.renderManifests({ ...opts, eventing: values.eventing })));
    }
    return 0;
  } catch (err) {
    io.stderr.write(`edgefl manifests: ${(err as Error).message}\n`);
    return err instanceof UsageError ? 2 : 1;
  }
}

function pad(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n') + '\n';
}

export async function runKubeStatusCommand(argv: string[], io: CommandIO = defaultIO): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      allowPositionals: false,
      options: {
        // Accepted so the dispatcher can pass `status --kube …` through unchanged.
        kube: { type: 'boolean', default: false },
        namespace: { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (err) {
    io.stderr.write(`${(err as Error).message}\n\n${STATUS_USAGE}`);
    return 2;
  }
  if (values.help) {
    io.stdout.write(STATUS_USAGE);
    return 0;
  }
  const namespace = values.namespace ?? (process.env[ENV.namespace] || DEFAULT_NAMESPACE);
  try {
    const discovery = await import('../kube/discovery.js');
    const kc = await discovery.loadDefaultKubeConfig();
    const nodes = await discovery.edgeNodeStatus(kc, namespace);
    if (values.json) {
      io.stdout.write(JSON.stringify({ namespace, nodes }, null, 2) + '\n');
      return 0;
    }
    if (nodes.length === 0) {
      io.stdout.write(`no edgefl edge-node services found in namespace ${namespace}\n`);
      return 0;
    }
    const rows = [['NODE', 'ROLE', 'SERVICE', 'READY', 'LATEST REVISION', 'PODS', 'URL']];
    for (const node of nodes) {
      for (const role of ['trainer', 'serving'] as const) {
        const s = node[role];
        rows.push(
          s
            ? [
                String(node.nodeId),
                role,
                s.name,
                s.ready ? 'True' : s.reason ? `False (${s.reason})` : 'False',
                s.latestReadyRevisionName ?? '-',
                s.pods === s.readyPods ? String(s.pods) : `${s.readyPods}/${s.pods}`,
                s.url ?? '-',
              ]
            : [String(node.nodeId), role, '(missing)', '-', '-', '-', '-'],
        );
      }
    }
    io.stdout.write(pad(rows));
    return 0;
  } catch (err) {
    io.stderr.write(`edgefl status --kube: ${(err as Error).message}\n`);
    return 1;
  }
}
