import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BrowserContext, Page } from 'playwright-core';
import { freePort } from '../services/harness/ports.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';

/**
 * End to end: a real `edgefl up` federation (2 edge nodes, 2 rounds) and a real headless
 * Chromium looking at its dashboard, drawing a digit and asking a serving function.
 * `edgefl up` alone took ~35 s with a lighter load; the timeouts are generous because starting four
 * Node processes with TensorFlow.js dominates and slows down a lot on a busy one.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const ARTIFACTS = path.join(ROOT, 'test-artifacts');
const ROUNDS = 2;

async function chromiumPath(): Promise<string> {
  if (process.env.CHROMIUM_PATH) return process.env.CHROMIUM_PATH;
  if (existsSync('/usr/bin/chromium')) return '/usr/bin/chromium';
  return (await import('@sparticuz/chromium')).default.executablePath();
}

const started = Date.now();
const mark = (what: string) => console.log(`[e2e +${((Date.now() - started) / 1000).toFixed(1)} s] ${what}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function getJSON<T = any>(url: string): Promise<T> {
  const res = await fetch(url, { headers: { accept: 'application/json' }, signal: AbortSignal.timeout(5000) });
  if (!res.ok) throw new Error(`${url}: ${res.status}`);
  return (await res.json()) as T;
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs: number, proc?: ChildProcess): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < end) {
    if (proc && proc.exitCode !== null) throw new Error(`federation exited (${proc.exitCode}) while waiting for ${what}`);
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    await sleep(250);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}

let db: TestDatabase;
let dataDir: string;
let profileDir: string;
let fed: ChildProcess | undefined;
let fedOut = '';
let base: string;
let ctx: BrowserContext | undefined;
const pageErrors: string[] = [];

beforeAll(async () => {
  // The CLI runs the compiled code; build it when this checkout has none.
  if (!existsSync(path.join(ROOT, 'dist/services/cli/edgefl.js')) || !existsSync(path.join(ROOT, 'dist/aggregator/dashboard.js'))) {
    execFileSync(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', path.join(ROOT, 'tsconfig.json')], { stdio: 'inherit' });
  }
  mkdirSync(ARTIFACTS, { recursive: true });
  db = await createTestDatabase();
  dataDir = mkdtempSync(path.join(os.tmpdir(), 'edgefl-e2e-'));
  chmodSync(dataDir, 0o755);
  profileDir = mkdtempSync(path.join(os.tmpdir(), 'edgefl-chromium-'));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  fed = spawn(
    process.execPath,
    [path.join(ROOT, 'services/cli/bin.mjs'), 'up', '--nodes', '2', '--rounds', String(ROUNDS), '--epochs', '1', '--max-train-samples', '300', '--port', String(port), '--data-dir', dataDir, '--target', '0.999', '--test-size', '500', '--no-run'],
    { cwd: ROOT, env: { ...process.env, DATABASE_URL: db.url, EDGEFL_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  fed.stdout!.on('data', (d: Buffer) => (fedOut += d.toString()));
  fed.stderr!.on('data', (d: Buffer) => (fedOut += d.toString()));

  const executablePath = await chromiumPath();
  ctx = await (
    await import('playwright-core')
  ).chromium.launchPersistentContext(profileDir, {
    executablePath,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1200, height: 900 },
  });
}, 60_000);

afterAll(async () => {
  await ctx?.close().catch(() => {});
  if (fed && fed.exitCode === null && fed.signalCode === null) {
    fed.kill('SIGKILL');
    await sleep(500);
  }
  await db?.close();
  for (const d of [dataDir, profileDir]) if (d) rmSync(d, { recursive: true, force: true });
});

function watchErrors(page: Page) {
  page.on('pageerror', (e) => pageErrors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') pageErrors.push(`console: ${m.text()}`);
  });
}

describe('dashboard end to end', () => {
  let runId: string;
  let page: Page;

  it('follows a live federation: chart, rounds, nodes and models', async () => {
    try {
      // The page opens before the run exists, so every round it shows must arrive live, over SSE.
      await until('the aggregator and its dashboard', async () => ((await getJSON<{ runs: unknown[] }>(`${base}/runs`)).runs ? true : undefined), 150_000, fed);
      mark('federation up (no run yet)');
      const res = await fetch(`${base}/`, { headers: { accept: 'text/html' } });
      expect(res.headers.get('content-type')).toMatch(/text\/html/);
      const csp = res.headers.get('content-security-policy') ?? '';
      expect(csp).toContain("script-src 'self'");
      expect(csp).toContain('connect-src');
      expect(csp).toContain('http://127.0.0.1:*');
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
      expect((await getJSON(`${base}/`)).service).toBe('edgefl-aggregator');

      page = ctx!.pages()[0] ?? (await ctx!.newPage());
      watchErrors(page);
      await page.goto(`${base}/`);
      // Record every value the chart's round count takes, to see it grow without a reload.
      await page.evaluate(() => {
        const chart = document.querySelector('#chart')!;
        const seen: string[] = ((window as any).__rounds = []);
        new MutationObserver(() => {
          const v = chart.getAttribute('data-rounds') ?? '';
          if (seen[seen.length - 1] !== v) seen.push(v);
        }).observe(chart, { attributes: true, attributeFilter: ['data-rounds'] });
        // The "Round N in progress" header must name the round the table shows running, whenever both are drawn.
        const headers: string[] = ((window as any).__headers = []);
        const check = () => {
          const prog = document.querySelector('#run-progress') as HTMLElement;
          if (prog.hidden) return;
          const running = [...document.querySelectorAll('#rounds-table tbody tr')].find((tr) => tr.querySelector('.badge')?.textContent === 'running');
          headers.push(`${/Round (\d+)/.exec(prog.textContent ?? '')?.[1]}=${running?.getAttribute('data-round') ?? 'none'}`);
        };
        new MutationObserver(check).observe(document.querySelector('#run-detail')!, { subtree: true, childList: true, characterData: true, attributes: true });
      });
      await page.waitForSelector('#live.on', { timeout: 10_000 });
      // `edgefl up` keeps the admin token in the data directory (never on the terminal).
      const { adminToken } = JSON.parse(readFileSync(path.join(dataDir, 'local.json'), 'utf8')) as { adminToken: string };
      const started = await fetch(`${base}/runs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` },
        body: JSON.stringify({ rounds: ROUNDS, epochs: 1, targetAccuracy: 0.999 }),
      });
      expect(started.status).toBe(201);
      runId = ((await started.json()) as { id: string }).id;
      mark(`run ${runId} started with the page open`);

      const run = await until(
        'the run to finish',
        async () => {
          const r = await getJSON(`${base}/runs/${runId}`);
          return r.status === 'running' ? undefined : r;
        },
        120_000,
        fed,
      );
      expect(run.status).toBe('completed');
      mark(`run ${run.status}: ${run.stopReason}`);
      const completed = run.rounds.filter((r: { status: string }) => r.status === 'completed');
      expect(completed).toHaveLength(ROUNDS);

      await page.waitForSelector(`#chart[data-rounds="${ROUNDS}"]`, { timeout: 15_000 });
      await page.waitForSelector('#run-status.completed', { timeout: 10_000 });
      expect(await page.locator('#chart circle.pt-acc').count()).toBe(completed.length);
      expect(await page.locator('#chart circle.pt-loss').count()).toBe(completed.length);
      // one line per edge node
      expect(await page.locator('#chart polyline.node-line').count()).toBe(2);
      expect(await page.locator('#rounds-table tbody tr').count()).toBe(run.rounds.length);
      expect(await page.textContent('#run-id')).toBe(runId);
      // The page was open before the run started: SSE brought every round in without a reload.
      const seen: number[] = (await page.evaluate(() => (window as any).__rounds as string[])).map(Number);
      expect(seen.at(-1)).toBe(ROUNDS);
      expect(Math.min(...seen)).toBeLessThan(ROUNDS);

      const headers: string[] = await page.evaluate(() => (window as any).__headers);
      expect(headers.filter((h) => h.split('=')[0] !== h.split('=')[1])).toEqual([]);
      expect(headers.length).toBeGreaterThan(0); // the page is open before the run starts, so it saw rounds in progress

      // What is promoted, and what each node's serving function reports it serves.
      const promoted = (await getJSON(`${base}/models/promoted`)).fleet;
      expect(promoted.by).toBe('policy:best');
      await page.waitForFunction((v) => document.querySelector('#promoted-fleet')?.textContent?.startsWith(`v${v},`), promoted.version, { timeout: 10_000 });
      await page.waitForFunction((v) => [...document.querySelectorAll('#nodes dd.serves')].filter((d) => d.textContent?.startsWith(`v${v} `)).length === 2, promoted.version, { timeout: 10_000 });
      expect(await page.textContent(`#models-table tr[data-version="${promoted.version}"] .badge`)).toBe('promoted');

      await page.waitForFunction(() => document.querySelectorAll('#nodes .node').length === 2);
      await page.waitForFunction(() => document.querySelectorAll('#nodes .hist rect').length === 20, undefined, { timeout: 10_000 });
      expect(await page.locator('#nodes .node dd', { hasText: 'samples/s' }).count()).toBe(2);
      const models = (await getJSON(`${base}/models`)).models;
      await page.waitForFunction((n) => document.querySelectorAll('#models-table tbody tr').length === n, models.length, { timeout: 10_000 });
      const href = await page.getAttribute(`#models-table tr[data-version="${run.latestVersion}"] a[download]`, 'href');
      expect(href).toBe(`/models/${run.latestVersion}?format=bin`);
      const bin = await fetch(base + href);
      expect(bin.headers.get('content-type')).toBe('application/octet-stream');

      await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard.png'), fullPage: true });
      await page.setViewportSize({ width: 390, height: 844 });
      // the chart redraws for the narrow screen (its viewBox follows the width, so text stays legible)
      await page.waitForFunction(() => Number(document.querySelector('#chart')!.getAttribute('viewBox')!.split(' ')[2]) <= 390);
      await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-phone.png'), fullPage: true });
      // nothing overflows the phone's width
      expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
      await page.setViewportSize({ width: 1200, height: 900 });
      mark('dashboard checked');
    } catch (e) {
      console.error(fedOut.slice(-4000));
      throw e;
    }
  }, 300_000);

  it('classifies a digit drawn on the try-it canvas', async () => {
    await page.click('a[data-nav="try"]');
    await page.waitForSelector('#view-try:not([hidden])');
    await page.waitForFunction(() => document.querySelectorAll('#serving-select option').length === 3); // two nodes + "other URL"
    const box = (await page.locator('#try-canvas').boundingBox())!;
    const at = (fx: number, fy: number): [number, number] => [box.x + fx * box.width, box.y + fy * box.height];
    // a "7": top bar, then the diagonal
    await page.mouse.move(...at(0.25, 0.22));
    await page.mouse.down();
    await page.mouse.move(...at(0.75, 0.22), { steps: 12 });
    await page.mouse.move(...at(0.45, 0.82), { steps: 16 });
    await page.mouse.up();
    await page.screenshot({ path: path.join(ARTIFACTS, 'try-drawn.png') });
    await page.click('#classify');
    const meta = await page.waitForSelector('#result [data-model-version]', { timeout: 15_000 });
    const version = Number(await meta.getAttribute('data-model-version'));
    const latency = Number(await meta.getAttribute('data-latency-ms'));
    const versions = (await getJSON(`${base}/models`)).models.map((m: { version: number }) => m.version);
    expect(versions).toContain(version);
    expect(latency).toBeGreaterThan(0);
    expect(await page.locator('#result .top3 li').count()).toBe(3);
    const probs = await page.locator('#result .top3 li .p').allTextContents();
    const values = probs.map((p) => parseFloat(p));
    expect(values[0]).toBeGreaterThanOrEqual(values[1]!);
    expect(values[1]).toBeGreaterThanOrEqual(values[2]!);
    expect(await page.textContent('#result .meta')).toMatch(/Model v\d+ on node-\d answered in \d+ ms/);
    await page.screenshot({ path: path.join(ARTIFACTS, 'try-result.png'), fullPage: true });

    // the second serving function answers too
    await page.selectOption('#serving-select', { index: 1 });
    await page.click('#classify');
    await page.waitForFunction(() => /on node-1 answered/.test(document.querySelector('#result .meta')?.textContent ?? ''), undefined, { timeout: 15_000 });
    expect(pageErrors).toEqual([]);
    mark('try-it checked');
  }, 60_000);

  it('stops the whole federation on SIGINT', async () => {
    const exited = new Promise<number | null>((resolve) => fed!.once('exit', (code) => resolve(code)));
    fed!.kill('SIGINT');
    const code = await Promise.race([exited, sleep(30_000).then(() => 'timeout' as const)]);
    expect(code).toBe(0);
    expect(fedOut).toContain('edgefl: stopped.');
    mark('federation stopped');
    await expect(fetch(`${base}/healthz`, { signal: AbortSignal.timeout(2000) })).rejects.toThrow();
  }, 40_000);
});
