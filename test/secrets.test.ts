import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { secretProblem } from '../services/shared/auth.js';
import { ConfigError, ENV, loadConfig } from '../services/shared/config.js';
import { cgroupLimitMiB, memoryLimit } from '../services/shared/memory.js';
import { describeAuth, localSecrets, resolveAuth } from '../services/shared/secrets.js';
import { MAX_BATCH_SIZE, maxBatchForMemory } from '../services/trainer/train-request.js';

const tmp = () => mkdtempSync(path.join(os.tmpdir(), 'edgefl-secrets-'));
const GOOD = 'a-perfectly-fine-secret';

describe('secretProblem', () => {
  it('refuses placeholders and short values, accepts generated ones', () => {
    expect(secretProblem('CHANGE-ME-invoke-secret')).toMatch(/placeholder/);
    expect(secretProblem('change-me-but-long-enough-anyway')).toMatch(/placeholder/);
    expect(secretProblem('x'.repeat(15))).toMatch(/shorter than 16/);
    expect(secretProblem('x'.repeat(16))).toBeUndefined();
    expect(secretProblem(GOOD)).toBeUndefined();
  });
});

describe('resolveAuth', () => {
  const external = { [ENV.databaseUrl]: 'postgres://db/edgefl' };

  it('fails closed with an external database and no secret', () => {
    expect(() => resolveAuth(loadConfig(external), 'trainer')).toThrow(ConfigError);
    expect(() => resolveAuth(loadConfig({ ...external, [ENV.invokeSecret]: GOOD }), 'aggregator')).toThrow(/EDGEFL_ADMIN_TOKEN is not set/);
    expect(resolveAuth(loadConfig({ ...external, [ENV.invokeSecret]: GOOD }), 'trainer')).toMatchObject({ invokeSecret: GOOD, insecure: false, source: 'environment' });
  });

  it('runs unauthenticated only on the explicit opt-out, and says so', () => {
    const auth = resolveAuth(loadConfig({ ...external, [ENV.insecure]: '1' }), 'aggregator');
    expect(auth).toMatchObject({ insecure: true, source: 'none', invokeSecret: undefined, adminToken: undefined });
    expect(describeAuth('aggregator', auth)).toMatchObject({ level: 'warn', msg: expect.stringMatching(/INSECURE/) });
    expect(() => loadConfig({ [ENV.insecure]: 'maybe' })).toThrow(/EDGEFL_INSECURE must be 1\/true or 0\/false; got 'maybe'/);
    expect(resolveAuth(loadConfig({ ...external, [ENV.insecure]: '0', [ENV.invokeSecret]: GOOD }), 'trainer').insecure).toBe(false);
  });

  it('with the embedded database, shares one generated pair through the data directory (mode 0600)', () => {
    const dir = tmp();
    const trainer = resolveAuth(loadConfig({ [ENV.dataDir]: dir }), 'trainer');
    const aggregator = resolveAuth(loadConfig({ [ENV.dataDir]: dir }), 'aggregator');
    expect(trainer.source).toBe('data-dir');
    expect(trainer.invokeSecret).toBe(aggregator.invokeSecret);
    expect(secretProblem(aggregator.adminToken!)).toBeUndefined();
    const file = path.join(dir, 'secrets.json');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({ invokeSecret: trainer.invokeSecret, adminToken: aggregator.adminToken });
    // A secret set in the environment wins over the file.
    expect(resolveAuth(loadConfig({ [ENV.dataDir]: dir, [ENV.invokeSecret]: GOOD }), 'trainer').invokeSecret).toBe(GOOD);
  });

  it('processes creating the secrets at once all end up with the same pair', async () => {
    const dir = tmp();
    const module = pathToFileURL(path.resolve(import.meta.dirname, '../dist/services/shared/secrets.js')).href;
    const script = `import(${JSON.stringify(module)}).then((m) => console.log(m.localSecrets(${JSON.stringify(dir)}).invokeSecret))`;
    const run = () =>
      new Promise<string>((resolve, reject) => {
        const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
        let out = '';
        child.stdout.on('data', (c: Buffer) => (out += c.toString()));
        child.on('exit', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`exit ${code}`))));
      });
    const seen = await Promise.all(Array.from({ length: 6 }, run));
    expect(new Set(seen).size).toBe(1);
    expect(seen[0]).toBe(localSecrets(dir).invokeSecret);
  });
});

describe('memory limit and batch size', () => {
  it('takes EDGEFL_MEMORY_LIMIT_MIB, then the cgroup limit, then the manifest default', () => {
    expect(memoryLimit(300, 512, () => 1024)).toEqual({ mib: 300, source: ENV.memoryLimitMiB });
    expect(memoryLimit(undefined, 512, () => 1024)).toEqual({ mib: 1024, source: 'cgroup' });
    expect(memoryLimit(undefined, 512, () => undefined)).toEqual({ mib: 512, source: 'default' });
    expect(loadConfig({ [ENV.memoryLimitMiB]: '768' }).memoryLimitMiB).toBe(768);
    expect(() => loadConfig({ [ENV.memoryLimitMiB]: '32' })).toThrow(/EDGEFL_MEMORY_LIMIT_MIB must be an integer >= 64; got '32'/);
  });

  it('reads cgroup v2 and v1 limits and treats "max" as none', () => {
    const files = (map: Record<string, string>) => (f: string) => {
      if (f in map) return map[f]!;
      throw new Error('ENOENT');
    };
    expect(cgroupLimitMiB(files({ '/sys/fs/cgroup/memory.max': '536870912\n' }))).toBe(512);
    expect(cgroupLimitMiB(files({ '/sys/fs/cgroup/memory.max': 'max\n' }))).toBeUndefined();
    expect(cgroupLimitMiB(files({ '/sys/fs/cgroup/memory/memory.limit_in_bytes': '268435456' }))).toBe(256);
    expect(cgroupLimitMiB(files({ '/sys/fs/cgroup/memory/memory.limit_in_bytes': '9223372036854771712' }))).toBeUndefined();
    expect(cgroupLimitMiB(files({}))).toBeUndefined();
  });

  it('a trainer with the manifest limit (512 MiB) cannot be asked for a batch that would not fit', () => {
    const at512 = maxBatchForMemory(512);
    expect(at512).toBeGreaterThanOrEqual(32); // the default batch fits
    expect(at512).toBeLessThan(400);
    expect(maxBatchForMemory(1024)).toBeGreaterThan(at512);
    expect(maxBatchForMemory(64)).toBe(1);
    expect(maxBatchForMemory(1 << 20)).toBe(MAX_BATCH_SIZE);
  });
});
