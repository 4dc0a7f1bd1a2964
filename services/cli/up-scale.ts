/**
 * `edgefl up` at scale: many registered edge nodes whose trainers start on demand behind the
 * local activator (services/harness/activator.ts), emulated slow and flaky devices, fewer
 * serving functions, and the run's sampling flags (fraction, availability, minimum count).
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Express } from 'express';
import { RunConfigSchema, type RunConfig } from '../../aggregator/run-config.js';
import { ENV } from '../shared/config.js';
import { bearerToken, verifyInvokeToken } from '../shared/auth.js';
import { startActivator, type ActivatorServer } from '../harness/activator-proxy.js';
import { edgeflCli, spawnService } from '../harness/process.js';
import { assignDevices, deviceEnv, loadDeviceProfile, type Device } from '../trainer/device-profile.js';
import { setWarmthSource, worthKeeping } from '../../aggregator/warmth.js';
import { UsageError, fromNumberSchema, int, num, text } from './flags.js';

const RUN_FIELDS = RunConfigSchema.shape;

/** Above this many nodes, trainers start on demand even without --max-active. */
export const ON_DEMAND_ABOVE = 16;
export const DEFAULT_MAX_ACTIVE = 4;
/**
 * How long Knative keeps an idle revision's pod by default: the autoscaler's 60 s stable window
 * must see no traffic before it scales to zero, then scale-to-zero-grace-period (30 s) applies.
 */
export const DEFAULT_IDLE_S = 90;

/** Spread into UP_FLAGS. */
export const SCALE_FLAGS = {
  'max-active': int(`trainer processes at once; trainers start on demand (default ${DEFAULT_MAX_ACTIVE}; implied above ${ON_DEMAND_ABOVE} nodes)`, { min: 1, max: 256 }),
  'idle-s': num(`stop a trainer idle this many seconds (default ${DEFAULT_IDLE_S}: Knative's 60 s stable window + 30 s scale-to-zero grace)`, { above: 0, arg: 'S' }),
  'serving-nodes': int('serving functions (default: every node, at most 3 when trainers start on demand)', { min: 1, max: 1000 }),
  profile: text('emulated devices: stragglers (20% 4x slower, 10% failing half their updates), none, or a JSON file', { arg: 'P' }),
  fraction: fromNumberSchema(RUN_FIELDS.fraction.unwrap(), 'share of the available nodes sampled per round (default 1)', { optional: true }),
  availability: fromNumberSchema(RUN_FIELDS.availability.unwrap(), 'share of nodes reachable in a round, seeded (default 1)', { optional: true }),
  'min-nodes': fromNumberSchema(RUN_FIELDS.minNodes.unwrap(), 'fewest nodes a round samples (default 1)', { optional: true }),
  patience: fromNumberSchema(RUN_FIELDS.patience.unwrap(), 'stop after this many rounds without improvement (default 6; sampled rounds are noisy)', { optional: true }),
  'buffer-size': fromNumberSchema(RUN_FIELDS.bufferSize, 'fedbuff: updates buffered per aggregation, K (default 3)', { optional: true }),
};

interface ScaleValues {
  nodes: number;
  'max-active'?: number;
  'idle-s'?: number;
  'serving-nodes'?: number;
  profile?: string;
  fraction?: number;
  availability?: number;
  'min-nodes'?: number;
  patience?: number;
  'buffer-size'?: number;
}

export interface ScalePlan {
  nodes: number;
  onDemand: boolean;
  servingNodes: number;
  maxActive: number;
  idleMs: number;
  devices: Device[];
}

/** How `up` starts its nodes, from its flags. */
export function scalePlanOf(v: ScaleValues): ScalePlan {
  let devices: Device[] = [];
  try {
    if (v.profile) devices = assignDevices(loadDeviceProfile(v.profile), v.nodes);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const onDemand = v.nodes > ON_DEMAND_ABOVE || v['max-active'] !== undefined || v['idle-s'] !== undefined || v.profile !== undefined;
  return {
    nodes: v.nodes,
    onDemand,
    servingNodes: Math.min(v.nodes, v['serving-nodes'] ?? (onDemand ? 3 : v.nodes)),
    maxActive: v['max-active'] ?? DEFAULT_MAX_ACTIVE,
    idleMs: (v['idle-s'] ?? DEFAULT_IDLE_S) * 1000,
    devices,
  };
}

/** The run fields these flags set; the quorum defaults to half a round's sample (a sampled round cannot wait on every node). */
export function scaleRunFields(v: ScaleValues): Partial<RunConfig> {
  const out: Partial<RunConfig> = {};
  if (v.fraction !== undefined) out.fraction = v.fraction;
  if (v.availability !== undefined) out.availability = v.availability;
  if (v['min-nodes'] !== undefined) out.minNodes = v['min-nodes'];
  if (v.patience !== undefined) out.patience = v.patience;
  if (v['buffer-size'] !== undefined) out.bufferSize = v['buffer-size'];
  return out;
}

export function scaleQuorum(v: ScaleValues): number | undefined {
  if (v.fraction === undefined && v.availability === undefined) return undefined;
  const perRound = Math.max(v['min-nodes'] ?? 1, Math.ceil((v.fraction ?? 1) * (v.availability ?? 1) * v.nodes));
  return Math.max(1, Math.ceil(perRound / 2));
}

/**
 * Registers every node behind the activator; no trainer process runs until a node is invoked.
 * `envFor(node)`: the node's whole environment (its data directory, its long-term secret), as
 * always-on trainers get it.
 */
/**
 * On-demand trainers run --max-active at a time on one machine, so their memory adds up: a 2 MiB
 * semi-space (V8's default is 16) measured 15 MiB less RSS idle and 32 MiB less at the peak of
 * training 80 digits, for about 3 % fewer samples/s. Training's own memory is the wasm heap, which
 * this does not touch.
 */
const ON_DEMAND_TRAINER_HEAP = { NODE_OPTIONS: '--max-semi-space-size=2' };

export async function startOnDemandTrainers(plan: ScalePlan, envFor: (node: number) => Record<string, string>, logDir: string, say: (l: string) => void): Promise<ActivatorServer> {
  // The invoke secret is the same for every node: read once, not per wake request.
  const secret = envFor(0)[ENV.invokeSecret];
  const activator = await startActivator({
    nodes: plan.nodes,
    maxActive: plan.maxActive,
    idleMs: plan.idleMs,
    refuseWake: (nodeId, req) => {
      const check = secret ? verifyInvokeToken(secret, bearerToken(req.headers.authorization), nodeId) : undefined;
      return check && !check.ok ? `invocation token ${check.reason.replaceAll('_', ' ')}` : undefined;
    },
    async start(node) {
      const name = `trainer-${node}`;
      const child = spawnService({ name, args: [edgeflCli(), 'trainer'], env: { ...envFor(node), ...deviceEnv(plan.devices[node] ?? { slowdown: 1, failProbability: 0 }), ...ON_DEMAND_TRAINER_HEAP, [ENV.nodeId]: String(node), [ENV.port]: '0' }, logFile: path.join(logDir, `${name}.log`) });
      try {
        const url = `http://127.0.0.1:${await child.port()}`;
        await child.waitReady(url + '/readyz');
        return { url, pid: child.pid, exited: child.exited, stop: () => child.stop() };
      } catch (e) {
        await child.stop();
        throw e;
      }
    },
  });
  // The aggregator runs in this process: its selection prefers the nodes whose trainer is warm (aggregator/warmth.ts).
  setWarmthSource({ warm: () => worthKeeping(activator.activator.warmSlots()), running: () => activator.activator.warmNodes(), capacity: plan.maxActive });
  const devices = plan.devices.filter((d) => d.slowdown !== 1 || d.failProbability > 0).length;
  say(`edgefl: ${plan.nodes} edge nodes registered behind the activator at ${activator.url}/activator: trainers start on demand (at most ${plan.maxActive} at once, stopped after ${plan.idleMs / 1000} s idle)${devices ? `; ${devices} emulated slow or flaky devices` : ''}`);
  return activator;
}

/** The aggregator's GET /activator (same origin as the dashboard): every node's state and the cold starts. */
export function mountActivatorRoute(app: Express, activator: ActivatorServer | undefined, devices: readonly Device[]): void {
  app.get('/activator', (_req, res) => {
    // 200, not 404: the dashboard asks on every page, and a browser logs each 404 as an error.
    if (!activator) return void res.json({ onDemand: false, message: 'trainers run always-on here (edgefl up --max-active N starts them on demand)' });
    const snap = activator.activator.snapshot();
    res.json({ onDemand: true, ...snap, nodes: snap.nodes.map((n, i) => ({ ...n, slowdown: devices[i]?.slowdown ?? 1, failProbability: devices[i]?.failProbability ?? 0 })) });
  });
}

/** Stops the on-demand trainers, leaving their record in DATA_DIR/activator.json (the scale benchmark reads it). */
export async function stopOnDemandTrainers(activator: ActivatorServer | undefined, dataDir: string): Promise<void> {
  if (!activator) return;
  setWarmthSource(undefined);
  writeFileSync(path.join(dataDir, 'activator.json'), JSON.stringify(activator.activator.snapshot()));
  await activator.close();
}
