/**
 * Tiny versions of the benchmarks through the same code path as `npm run bench`
 * (dist/bench/run.js runBenchmark), against this file's test database. Checks the
 * result.json schema and that report.md and the charts are written.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';

type RunModule = typeof import('../bench/run.js');

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
let db: TestDatabase;
let run: RunModule;
let out: string;
const savedUrl = process.env.DATABASE_URL;

/** True when every compiled source has a dist/ .js at least as new as its .ts. */
function distIsCurrent(): boolean {
  const stale = (dir: string): boolean =>
    readdirSync(path.join(root, dir), { withFileTypes: true }).some((e) => {
      const rel = path.join(dir, e.name);
      if (e.isDirectory()) return stale(rel);
      if (!e.name.endsWith('.ts') || e.name.endsWith('.d.ts')) return false;
      const js = path.join(root, 'dist', rel.replace(/\.ts$/, '.js'));
      return !existsSync(js) || statSync(js).mtimeMs < statSync(path.join(root, rel)).mtimeMs;
    });
  return !['services', 'aggregator', 'datasets', 'bench'].some((d) => existsSync(path.join(root, d)) && stale(d));
}

beforeAll(async () => {
  // Spawned serving processes run the compiled CLI, so dist/ must be current; build only when it is not.
  if (!distIsCurrent()) {
    execFileSync(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], { cwd: root, stdio: 'inherit' });
  }
  db = await createTestDatabase();
  process.env.DATABASE_URL = db.url;
  run = (await import(pathToFileURL(path.join(root, 'dist/bench/run.js')).href)) as RunModule;
  out = mkdtempSync(path.join(os.tmpdir(), 'edgefl-bench-smoke-'));
});

afterAll(async () => {
  if (savedUrl === undefined) delete process.env.DATABASE_URL;
  else process.env.DATABASE_URL = savedUrl;
  await db?.close();
  if (out) rmSync(out, { recursive: true, force: true });
});

const quiet = { log: () => {} };

function expectEnvelope(result: Record<string, any>, name: string, dir: string, charts: string[]) {
  expect(result).toMatchObject({ benchmark: name, params: expect.any(Object), results: expect.any(Object), targets: expect.any(Array) });
  expect(new Date(result.started_at).toISOString()).toBe(result.started_at);
  expect(result.machine).toMatchObject({ cpus: expect.any(Number), node: process.version, backend: expect.any(String) });
  for (const t of result.targets) {
    expect(t).toMatchObject({ name: expect.any(String), target: expect.any(String), unit: expect.any(String) });
    expect(t.measured === null || typeof t.measured === 'number').toBe(true);
    expect(t.met === null || typeof t.met === 'boolean').toBe(true);
  }
  // The in-process ceiling is measured in every benchmark.
  expect(result.results.ceiling.length).toBeGreaterThan(0);
  for (const c of result.results.ceiling) expect(c.images_per_s).toBeGreaterThan(0);
  const onDisk = JSON.parse(readFileSync(path.join(dir, 'result.json'), 'utf8'));
  expect(onDisk).toEqual(result);
  const report = readFileSync(path.join(dir, 'report.md'), 'utf8');
  expect(report).toContain(`# edgefl benchmark: ${name}`);
  expect(report).toContain('## Targets');
  expect(result.charts).toEqual(charts);
  for (const c of charts) {
    const svg = readFileSync(path.join(dir, c), 'utf8');
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.trim().endsWith('</svg>')).toBe(true);
    expect(report).toContain(`](${c})`);
  }
}

describe('bench smoke', () => {
  it('cold-warm: one cold start, 0.5 s warm at 1 connection', async () => {
    const dir = path.join(out, 'cold-warm');
    const { result } = await run.runBenchmark('cold-warm', ['--cold', '1', '--duration', '0.5', '--connections', '1', '--out', dir], quiet);
    expectEnvelope(result, 'cold-warm', dir, ['cold-vs-warm.svg']);
    const r = result.results as any;
    expect(r.cold.runs).toHaveLength(1);
    const cold = r.cold.runs[0];
    expect(cold.total_ms).toBeGreaterThan(0);
    expect(cold.backend_init_ms).toBeGreaterThanOrEqual(0);
    expect(cold.first_request_ms).toBeGreaterThan(0);
    expect(cold.total_ms).toBeGreaterThanOrEqual(cold.ready_ms);
    expect(r.warm.c1.requests).toBeGreaterThan(0);
    expect(r.warm.c1.errors + r.warm.c1.non2xx).toBe(0);
    expect(r.warm.c1.p50_ms).toBeGreaterThan(0);
    expect(r.served_vs_in_process.c1_rps).toBeGreaterThan(0);
    expect(result.targets.map((t: { name: string }) => t.name)).toEqual(['cold start median']);
    expect(run.liveChildren()).toBe(0);
  });

  it('batch: sizes 1 and 10 (warm)', async () => {
    const dir = path.join(out, 'batch');
    const { result } = await run.runBenchmark('batch', ['--sizes', '1,10', '--reps', '2', '--cold', '0', '--out', dir], quiet);
    expectEnvelope(result, 'batch', dir, ['latency-vs-batch.svg', 'throughput-vs-batch.svg']);
    const rows = (result.results as any).rows;
    expect(rows.map((r: { batch: number }) => r.batch)).toEqual([1, 10]);
    for (const row of rows) {
      expect(row.warm_ms_median).toBeGreaterThan(0);
      expect(row.efficiency).toBeGreaterThan(0);
    }
  });

  it('cost: the equation on measured durations', async () => {
    const dir = path.join(out, 'cost');
    const { result } = await run.runBenchmark('cost', ['--batches', '1,5', '--memory', '128,1024', '--samples', '3', '--out', dir], quiet);
    expectEnvelope(result, 'cost', dir, ['cost-vs-memory.svg']);
    const rows = (result.results as any).rows as { images_per_request: number; memory_mb: number; requests: number; billed_ms: number; total_usd: number; duration_ms: number }[];
    expect(rows).toHaveLength(4);
    for (const r of rows) {
      expect(r.requests).toBe(Math.ceil(10_000 / r.images_per_request));
      expect(r.billed_ms % 100).toBe(0);
      expect(r.billed_ms).toBeGreaterThanOrEqual(r.duration_ms);
      const expected = r.requests * (r.memory_mb / 1024) * (r.billed_ms / 1000) * 0.0000166667 + r.requests * 0.0000002;
      expect(r.total_usd).toBeCloseTo(expected, 7);
    }
  });

  it('writes no files outside --out and leaves no children behind', () => {
    expect(existsSync(path.join(out, 'cold-warm', 'report.md'))).toBe(true);
    expect(run.liveChildren()).toBe(0);
  });
});
