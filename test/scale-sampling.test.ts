/**
 * The pure parts of running at scale: device profiles (who is slow, who fails, and that a
 * failing device stores nothing), availability and the minimum sample per round, and the
 * `edgefl up` flags that switch trainers to on-demand.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { availableNodes } from '../aggregator/round/availability.js';
import { chooseNodes } from '../aggregator/round/plan.js';
import { parseRunConfig } from '../aggregator/run-config.js';
import { UP_FLAGS } from '../services/cli/up.js';
import { parseFlags } from '../services/cli/flags.js';
import { scalePlanOf, scaleQuorum, scaleRunFields } from '../services/cli/up-scale.js';
import { DEVICE_ENV, assignDevices, deviceDraw, deviceEnv, deviceFromEnv, emulateDevice, loadDeviceProfile } from '../services/trainer/device-profile.js';

const far = () => new Date(Date.now() + 60_000);

describe('device profiles', () => {
  it('stragglers: 20 of 100 nodes 4x slower and 10 failing, disjoint, the same for the same seed', () => {
    const devices = assignDevices(loadDeviceProfile('stragglers'), 100);
    expect(devices.filter((d) => d.slowdown === 4)).toHaveLength(20);
    expect(devices.filter((d) => d.failProbability > 0)).toHaveLength(10);
    expect(devices.filter((d) => d.slowdown === 4 && d.failProbability > 0)).toHaveLength(0);
    expect(assignDevices(loadDeviceProfile('stragglers'), 100)).toEqual(devices);
    expect(assignDevices({ ...loadDeviceProfile('stragglers'), seed: 8 }, 100)).not.toEqual(devices);
    expect(assignDevices(loadDeviceProfile('none'), 5).every((d) => d.slowdown === 1 && d.failProbability === 0)).toBe(true);
  });

  it('reads a JSON file and refuses a bad one with a reason', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'edgefl-profile-'));
    const good = path.join(dir, 'good.json');
    writeFileSync(good, JSON.stringify({ groups: [{ share: 0.5, slowdown: 2 }] }));
    expect(assignDevices(loadDeviceProfile(good), 10).filter((d) => d.slowdown === 2)).toHaveLength(5);
    const over = path.join(dir, 'over.json');
    writeFileSync(over, JSON.stringify({ groups: [{ share: 0.7 }, { share: 0.6 }] }));
    expect(() => loadDeviceProfile(over)).toThrow(/add up to more than 1/);
    const typo = path.join(dir, 'typo.json');
    writeFileSync(typo, JSON.stringify({ groups: [{ share: 0.1, slowness: 3 }] }));
    expect(() => loadDeviceProfile(typo)).toThrow(/slowness/);
    expect(() => loadDeviceProfile(path.join(dir, 'missing.json'))).toThrow(/not a preset/);
  });

  it('travels to the trainer through its environment; bad values are refused', () => {
    expect(deviceFromEnv({})).toBeUndefined();
    expect(deviceFromEnv(deviceEnv({ slowdown: 4, failProbability: 0 }))).toEqual({ slowdown: 4, failProbability: 0 });
    expect(() => deviceFromEnv({ [DEVICE_ENV.failProbability]: '2' })).toThrow(DEVICE_ENV.failProbability);
  });

  it('a failing device throws before anything is stored; a plain one passes; draws are seeded', async () => {
    await expect(emulateDevice({ slowdown: 1, failProbability: 0.5 }, 0, 0.2, far())).rejects.toMatchObject({ status: 503, code: 'device_failed' });
    await expect(emulateDevice({ slowdown: 1, failProbability: 0.5 }, 0, 0.7, far())).resolves.toBeUndefined();
    await expect(emulateDevice(undefined, 1000, 0, far())).resolves.toBeUndefined();
    // A slow device whose extra time runs past the deadline is discarded, not stored late.
    await expect(emulateDevice({ slowdown: 4, failProbability: 0 }, 1000, 0.9, new Date(Date.now() - 1))).rejects.toMatchObject({ status: 410 });
    expect(deviceDraw('node-3', 1, 2, 0)).toBe(deviceDraw('node-3', 1, 2, 0));
    const draws = Array.from({ length: 200 }, (_, i) => deviceDraw('node-3', 1, i, 0));
    expect(draws.filter((d) => d < 0.5).length / draws.length).toBeGreaterThan(0.35);
    expect(draws.filter((d) => d < 0.5).length / draws.length).toBeLessThan(0.65);
  });
});

describe('availability and the minimum sample', () => {
  const targets = Array.from({ length: 100 }, (_, i) => ({ nodeId: `node-${i}`, url: `http://x/node-${i}` }));

  it('about `availability` of the nodes are reachable each round, seeded, a different set per round', () => {
    const r1 = availableNodes(targets, 0.5, 1, 1);
    expect(r1.length).toBeGreaterThan(30);
    expect(r1.length).toBeLessThan(70);
    expect(availableNodes(targets, 0.5, 1, 1)).toEqual(r1);
    expect(availableNodes(targets, 0.5, 1, 2)).not.toEqual(r1);
    expect(availableNodes(targets, 1, 1, 1)).toHaveLength(100);
  });

  it('a round samples fraction C of the available nodes, never fewer than minNodes', () => {
    const config = { fraction: 0.1, seed: 3, availability: 0.5 };
    const chosen = chooseNodes(targets, config, 4);
    const available = availableNodes(targets, 0.5, 3, 4);
    expect(chosen).toHaveLength(Math.ceil(0.1 * available.length));
    expect(chosen.every((t) => available.includes(t))).toBe(true);
    expect(chooseNodes(targets, { ...config, minNodes: 12 }, 4)).toHaveLength(12);
    expect(chooseNodes(targets.slice(0, 5), { fraction: 0.1, seed: 3, minNodes: 12 }, 4)).toHaveLength(5);
  });

  it('are run-config fields with ranges', () => {
    expect(parseRunConfig({ availability: 0.8, minNodes: 5 })).toMatchObject({ availability: 0.8, minNodes: 5 });
    expect(() => parseRunConfig({ availability: 0 })).toThrow(/availability/);
    expect(parseRunConfig({})).toMatchObject({ availability: 1, minNodes: 1 });
  });
});

describe('edgefl up at scale', () => {
  const plan = (...argv: string[]) => scalePlanOf(parseFlags(UP_FLAGS, argv));

  it('starts trainers on demand above 16 nodes or when asked, with fewer serving functions', () => {
    expect(plan('--nodes', '3')).toMatchObject({ onDemand: false, servingNodes: 3 });
    expect(plan('--nodes', '100')).toMatchObject({ onDemand: true, servingNodes: 3, maxActive: 4, idleMs: 90_000 });
    expect(plan('--nodes', '5', '--max-active', '2', '--idle-s', '1.5', '--serving-nodes', '1')).toMatchObject({ onDemand: true, servingNodes: 1, maxActive: 2, idleMs: 1500 });
    expect(plan('--nodes', '100', '--profile', 'stragglers').devices.filter((d) => d.slowdown > 1)).toHaveLength(20);
    expect(() => plan('--nodes', '100', '--profile', 'nope')).toThrow(/not a preset/);
    expect(() => parseFlags(UP_FLAGS, ['--nodes', '1001'])).toThrow(/--nodes/);
  });

  it('passes the sampling flags to the run; the quorum defaults to half a round', () => {
    const v = parseFlags(UP_FLAGS, ['--nodes', '100', '--fraction', '0.1', '--min-nodes', '4', '--patience', '50']);
    expect(scaleRunFields(v)).toEqual({ fraction: 0.1, minNodes: 4, patience: 50 });
    expect(scaleQuorum(v)).toBe(5);
    expect(scaleQuorum(parseFlags(UP_FLAGS, ['--nodes', '100']))).toBeUndefined();
    expect(scaleRunFields(parseFlags(UP_FLAGS, ['--strategy', 'fedbuff', '--buffer-size', '6']))).toEqual({ bufferSize: 6 });
    expect(() => parseFlags(UP_FLAGS, ['--buffer-size', '0'])).toThrow(/--buffer-size/);
  });
});
