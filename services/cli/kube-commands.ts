/**
 * `edgefl manifests …` and `edgefl status --kube`. The dispatcher (services/cli/edgefl.ts)
 * calls these; both return an exit code instead of exiting so they stay testable.
 *
 * Both heavy dependencies are imported lazily: the manifest generator needs the
 * kubernetes-models devDependencies (absent from the production image), and
 * @kubernetes/client-node v2 cannot load on Node < 22.19. A static import of either would
 * break every other `edgefl` command.
 */
import { ENV } from '../shared/config.js';
import { DEFAULT_IMAGE, DEFAULT_NAMESPACE, DEFAULT_NODES } from '../kube/constants.js';
import { parseDataVolume } from '../kube/data-volume.js';
import { HELP_FLAG, UsageError, flagHelp, int, parseFlags, text, toggle, type Flags, type FlagValues } from './flags.js';

export interface CommandIO {
  stdout: { write(chunk: string): unknown };
  stderr: { write(chunk: string): unknown };
}

const defaultIO: CommandIO = { stdout: process.stdout, stderr: process.stderr };

const MANIFESTS_FLAGS = {
  nodes: int('number of edge nodes', { min: 1, default: DEFAULT_NODES }),
  image: text('container image', { arg: 'IMG', default: DEFAULT_IMAGE }),
  namespace: text('namespace', { arg: 'NS', default: DEFAULT_NAMESPACE }),
  eventing: toggle('include the Knative Eventing objects'),
  'serving-min-scale': int('serving min-scale: 0 scales to zero, 1 keeps one pod warm', { min: 0, default: 0 }),
  write: text('write files into DIR instead of printing', { arg: 'DIR' }),
  'data-volume': text("each node's own data for its trainer: hostPath:/DIR or pvc:NAME (claim NAME-node-<i>)", { arg: 'VOL' }),
  ...HELP_FLAG,
};

const MANIFESTS_USAGE = `Usage: edgefl manifests [--nodes N] [--image IMG] [--namespace NS] [--eventing]
                        [--serving-min-scale N] [--write DIR] [--data-volume VOL]

Renders the Kubernetes/Knative manifests. Without --write, prints multi-document YAML
(with --eventing: including Broker, Triggers and SinkBinding). With --write DIR, (re)generates
the kustomize tree (base/, overlays/eventing, overlays/keep-warm); --eventing is implied there.

${flagHelp(MANIFESTS_FLAGS)}
`;

const STATUS_FLAGS = {
  // Accepted so the dispatcher can pass `status --kube …` through unchanged.
  kube: toggle('edge nodes in a Knative cluster'),
  namespace: text(`namespace (default $${ENV.namespace} or ${DEFAULT_NAMESPACE})`, { arg: 'NS' }),
  json: toggle('print JSON instead of a table'),
  ...HELP_FLAG,
};

const STATUS_USAGE = `Usage: edgefl status --kube [--namespace NS] [--json]

Shows each edge node's trainer and serving Knative Service: readiness, latest ready
revision and current pods. Uses $KUBECONFIG / ~/.kube/config (or the in-cluster account).

${flagHelp(STATUS_FLAGS)}
`;

/** The parsed flags, or the exit code when there is nothing to run: 0 after --help, 2 after a usage error (with the usage). */
function parseCommand<F extends Flags>(flags: F, argv: string[], usage: string, io: CommandIO): FlagValues<F> | number {
  try {
    const values = parseFlags(flags, argv);
    if (!values.help) return values;
    io.stdout.write(usage);
    return 0;
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    io.stderr.write(`${err.message}\n\n${usage}`);
    return 2;
  }
}

export async function runManifestsCommand(argv: string[], io: CommandIO = defaultIO): Promise<number> {
  const values = parseCommand(MANIFESTS_FLAGS, argv, MANIFESTS_USAGE, io);
  if (typeof values === 'number') return values;
  try {
    const dataVolume = values['data-volume'] ? parseDataVolume(values['data-volume']) : undefined;
    const opts = { nodes: values.nodes, image: values.image, namespace: values.namespace, servingMinScale: values['serving-min-scale'], dataVolume };
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
    return 1;
  }
}

function pad(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n') + '\n';
}

export async function runKubeStatusCommand(argv: string[], io: CommandIO = defaultIO): Promise<number> {
  const values = parseCommand(STATUS_FLAGS, argv, STATUS_USAGE, io);
  if (typeof values === 'number') return values;
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
