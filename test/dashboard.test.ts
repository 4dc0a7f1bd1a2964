import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import express from 'express';
import { connectSrcFromEnv, contentSecurityPolicy, findAssetsDir, mountDashboard } from '../aggregator/dashboard.js';
import { applyCommonMiddleware, applyErrorHandlers } from '../services/http/common.js';
import { createLogger } from '../services/shared/log.js';
import { createMetrics } from '../services/shared/metrics.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
let server: Server;
let base: string;

beforeAll(async () => {
  const app = express();
  applyCommonMiddleware(app, createLogger({}, 'error'), createMetrics('test'));
  mountDashboard(app, { connectSrc: ['https://serving.example.com', "evil; script-src *"] });
  applyErrorHandlers(app, createLogger({}, 'error'));
  await new Promise<void>((r) => (server = app.listen(0, '127.0.0.1', () => r())));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise((r) => server.close(r)));

describe('dashboard routes', () => {
  it('serves the page with a strict CSP that lets the page reach serving functions', async () => {
    const res = await fetch(`${base}/`, { headers: { accept: 'text/html' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    const html = await res.text();
    expect(html).toContain('<canvas id="try-canvas"');
    expect(html).not.toMatch(/(src|href)="(https?:)?\/\//); // no CDN
    const csp = res.headers.get('content-security-policy')!;
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).toMatch(/connect-src 'self' http:\/\/127\.0\.0\.1:\* http:\/\/localhost:\* https:\/\/serving\.example\.com(;|$)/);
    expect(csp).not.toContain('evil');
    expect(res.headers.get('x-frame-options')).toBe('DENY');
  });

  it('still answers JSON clients at / with the route list', async () => {
    const res = await fetch(`${base}/`, { headers: { accept: 'application/json' } });
    expect((await res.json()).routes).toContain('/runs');
  });

  it('serves the assets with their types and nothing outside the folder', async () => {
    for (const [file, type] of [
      ['app.js', /javascript/],
      ['style.css', /text\/css/],
      ['favicon.svg', /image\/svg\+xml/],
    ] as const) {
      const res = await fetch(`${base}/dashboard/${file}`);
      expect(res.status, file).toBe(200);
      expect(res.headers.get('content-type')).toMatch(type);
      expect(res.headers.get('content-security-policy')).toBeTruthy();
    }
    expect((await fetch(`${base}/dashboard/..%2fdashboard.ts`)).status).toBe(404);
    expect((await fetch(`${base}/dashboard/%2e%2e/dashboard.ts`)).status).toBe(404);
    expect((await fetch(`${base}/dashboard/nope.js`)).status).toBe(404);
  });
});

describe('dashboard helpers', () => {
  it('find the assets from the source and from the compiled module', async () => {
    expect(findAssetsDir()).toBe(path.join(ROOT, 'aggregator/dashboard'));
    const compiled = path.join(ROOT, 'dist/aggregator/dashboard.js');
    if (existsSync(compiled)) {
      const mod = (await import(compiled)) as typeof import('../aggregator/dashboard.js');
      expect(mod.findAssetsDir()).toBe(path.join(ROOT, 'aggregator/dashboard'));
    }
  });

  it('build connect-src from the environment', () => {
    expect(connectSrcFromEnv({ EDGEFL_DASHBOARD_CONNECT_SRC: 'https://*.example.com, https://a.b', EDGEFL_SERVING_URLS: 'https://s1.example.com/x,not a url' })).toEqual([
      'https://*.example.com',
      'https://a.b',
      'https://s1.example.com',
    ]);
    expect(contentSecurityPolicy()).toContain("connect-src 'self' http://127.0.0.1:* http://localhost:*;");
  });
});

describe('without its assets', () => {
  it('still answers / with the route list instead of failing the aggregator', async () => {
    const app = express();
    expect(() => mountDashboard(app, { assetsDir: path.join(ROOT, 'no-such-dir') })).not.toThrow();
    const s = await new Promise<Server>((r) => {
      const srv = app.listen(0, '127.0.0.1', () => r(srv));
    });
    try {
      const res = await fetch(`http://127.0.0.1:${(s.address() as AddressInfo).port}/`, { headers: { accept: 'text/html' } });
      expect(await res.json()).toMatchObject({ service: 'edgefl-aggregator', dashboard: 'unavailable' });
    } finally {
      await new Promise((r) => s.close(r));
    }
  });
});
