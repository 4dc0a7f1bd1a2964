/**
 * Heterogeneous, flaky edge devices, emulated inside the trainer: a node's slowdown stretches
 * every local training (it sleeps (slowdown − 1) × the training's own time, so a slow device
 * costs wall time, not this machine's CPU), and its failure probability aborts an update midway,
 * before anything is stored. A profile assigns both to a seeded share of the nodes:
 * `stragglers` is 20 % of nodes 4× slower and 10 % failing half their updates.
 */
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { createRng, shuffled } from '../../datasets/rng.js';
import { HttpError } from '../http/errors.js';

export const DEVICE_ENV = { slowdown: 'EDGEFL_DEVICE_SLOWDOWN', failProbability: 'EDGEFL_DEVICE_FAIL_PROBABILITY' } as const;

const GroupSchema = z
  .object({
    /** Share of the nodes in this group. */
    share: z.number().min(0).max(1),
    slowdown: z.number().min(1).max(100).default(1),
    failProbability: z.number().min(0).max(1).default(0),
  })
  .strict();

export const DeviceProfileSchema = z
  .object({
    seed: z.number().int().min(0).default(7),
    groups: z.array(GroupSchema).max(32).refine((g) => g.reduce((n, x) => n + x.share, 0) <= 1 + 1e-9, 'the groups\' shares add up to more than 1'),
  })
  .strict();

export type DeviceProfile = z.infer<typeof DeviceProfileSchema>;

export interface Device {
  slowdown: number;
  failProbability: number;
}

export const PROFILE_PRESETS: Record<string, DeviceProfile> = {
  none: { seed: 7, groups: [] },
  stragglers: { seed: 7, groups: [{ share: 0.2, slowdown: 4, failProbability: 0 }, { share: 0.1, slowdown: 1, failProbability: 0.5 }] },
};

/** A preset name or a JSON file ({"groups": [{"share": 0.2, "slowdown": 4}, …]}); throws a one-line reason. */
export function loadDeviceProfile(spec: string): DeviceProfile {
  if (PROFILE_PRESETS[spec]) return PROFILE_PRESETS[spec];
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(spec, 'utf8'));
  } catch (e) {
    throw new Error(`--profile ${spec}: not a preset (${Object.keys(PROFILE_PRESETS).join(', ')}) nor a readable JSON file (${(e as Error).message})`);
  }
  const parsed = DeviceProfileSchema.safeParse(raw);
  if (!parsed.success) throw new Error(`--profile ${spec}: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'profile'}: ${i.message}`).join('; ')}`);
  return parsed.data;
}

/** Every node's device: the groups take seeded, disjoint shares of the nodes (⌊share·n⌉ each); the rest are plain. */
export function assignDevices(profile: DeviceProfile, nodes: number): Device[] {
  const devices: Device[] = Array.from({ length: nodes }, () => ({ slowdown: 1, failProbability: 0 }));
  const order = shuffled(devices.map((_, i) => i), createRng(profile.seed));
  let next = 0;
  for (const g of profile.groups) {
    for (const i of order.slice(next, next + Math.round(g.share * nodes))) devices[i] = { slowdown: g.slowdown, failProbability: g.failProbability };
    next += Math.round(g.share * nodes);
  }
  return devices;
}

/** The environment a node's trainer gets for its device (nothing for a plain one). */
export function deviceEnv(d: Device): Record<string, string> {
  const env: Record<string, string> = {};
  if (d.slowdown !== 1) env[DEVICE_ENV.slowdown] = String(d.slowdown);
  if (d.failProbability > 0) env[DEVICE_ENV.failProbability] = String(d.failProbability);
  return env;
}

const EnvSchema = z.object({
  [DEVICE_ENV.slowdown]: z.coerce.number().min(1).max(100).default(1),
  [DEVICE_ENV.failProbability]: z.coerce.number().min(0).max(1).default(0),
});

/** The trainer's device from its environment; undefined for a plain one. Bad values stop the trainer at start. */
export function deviceFromEnv(env: NodeJS.ProcessEnv): Device | undefined {
  const parsed = EnvSchema.safeParse(env);
  if (!parsed.success) throw new Error(`device profile: ${parsed.error.issues.map((i) => `${String(i.path[0])}: ${i.message}`).join('; ')}`);
  const d = { slowdown: parsed.data[DEVICE_ENV.slowdown], failProbability: parsed.data[DEVICE_ENV.failProbability] };
  return d.slowdown === 1 && d.failProbability === 0 ? undefined : d;
}

/**
 * Runs after local training, before the update is stored: a slow device takes its extra time
 * (stopping at the deadline), a flaky one fails at a seeded point of it, so the update is lost
 * whole. `draw` is this invocation's random number in [0, 1).
 */
export async function emulateDevice(d: Device | undefined, trainingMs: number, draw: number, deadline: Date): Promise<void> {
  if (!d) return;
  const extraMs = (d.slowdown - 1) * trainingMs;
  const fails = draw < d.failProbability;
  // A failing device gets some way into the update first (the fraction reuses the draw, so it stays seeded).
  const waitMs = fails ? extraMs * (draw / Math.max(d.failProbability, 1e-9)) : extraMs;
  await sleep(Math.max(0, Math.min(waitMs, deadline.getTime() - Date.now())));
  if (fails) throw new HttpError(503, 'device_failed', 'this (emulated) edge device failed mid-update; nothing was stored');
  if (Date.now() > deadline.getTime()) throw new HttpError(410, 'deadline_passed', 'the round passed its deadline while this slow device trained; update discarded');
}

/** A seeded draw per (node, round, attempt): reproducible runs, yet a retry may succeed where the first try failed. */
export function deviceDraw(nodeId: string, seed: number, round: number, attempt: number): number {
  let h = seed >>> 0;
  for (const c of `${nodeId}:${round}:${attempt}`) h = Math.imul(h ^ c.charCodeAt(0), 0x01000193) >>> 0;
  return createRng(h)();
}
