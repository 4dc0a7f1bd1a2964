import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import express, { type RequestHandler } from 'express';
import { createLogger } from '../services/shared/log.js';

/** Extra CSP connect-src sources for the try-it view (space or comma separated), e.g. https://*.example.com */
export const DASHBOARD_CONNECT_SRC_ENV = 'EDGEFL_DASHBOARD_CONNECT_SRC';

export interface DashboardOptions {
  /** Directory with index.html, app.js, style.css (default: found next to this module). */
  assetsDir?: string;
  /** Extra connect-src sources; default from EDGEFL_DASHBOARD_CONNECT_SRC plus the origins in EDGEFL_SERVING_URLS. */
  connectSrc?: string[];
}

const ROUTES = ['/runs', '/runs/:id', '/models', '/models/promoted', '/models/:version', '/nodes', '/events', '/metrics'];

/**
 * The dashboard: a static, framework-free page (aggregator/dashboard/) that reads the
 * aggregator's JSON routes and its /events stream. The assets are not compiled, so they
 * are served from the source tree whether this module runs from aggregator/ (tsx, tests)
 * or from dist/aggregator/ (the built CLI).
 */
export function mountDashboard(app: express.Express, opts: DashboardOptions = {}): void {
  let dir: string;
  try {
    dir = opts.assetsDir ?? findAssetsDir();
    if (!existsSync(path.join(dir, 'index.html'))) throw new Error(`no index.html in ${dir}`);
  } catch (e) {
    // An image built without the assets still serves the API; / then lists the routes.
    createLogger({ service: 'aggregator' }).warn('dashboard disabled', { err: (e as Error).message });
    app.get('/', (_req, res) => void res.json({ service: 'edgefl-aggregator', routes: ROUTES, dashboard: 'unavailable' }));
    return;
  }
  const csp = contentSecurityPolicy(opts.connectSrc ?? connectSrcFromEnv(process.env));
  const headers: RequestHandler = (_req, res, next) => {
    res.setHeader('Content-Security-Policy', csp);
    res.setHeader('Permissions-Policy', 'camera=(), microphone=(), geolocation=()');
    res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
    next();
  };
  const index = path.join(dir, 'index.html');

  app.get('/', headers, (req, res) => {
    // API clients asking for JSON still get the route list.
    if (req.accepts(['html', 'json']) === 'json') return void res.json({ service: 'edgefl-aggregator', routes: ROUTES });
    res.setHeader('Cache-Control', 'no-cache');
    res.sendFile(index);
  });
  app.get('/favicon.ico', (_req, res) => void res.redirect(301, '/dashboard/favicon.svg'));
  app.use('/dashboard', headers, express.static(dir, { index: false, dotfiles: 'ignore', fallthrough: true, maxAge: 0, etag: true }));
}

export function findAssetsDir(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = [
    path.join(here, 'dashboard'), // aggregator/dashboard.ts
    path.resolve(here, '../../aggregator/dashboard'), // dist/aggregator/dashboard.js
    path.resolve(here, '../../../aggregator/dashboard'),
    path.resolve(process.cwd(), 'aggregator/dashboard'),
  ];
  const found = candidates.find((d) => existsSync(path.join(d, 'index.html')));
  if (!found) throw new Error(`dashboard assets not found; looked in ${candidates.join(', ')}`);
  return found;
}

/** Local serving functions are always allowed; anything else comes from configuration. */
export function contentSecurityPolicy(extraConnect: string[] = []): string {
  const connect = ["'self'", 'http://127.0.0.1:*', 'http://localhost:*', ...extraConnect.filter(isSafeSource)];
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    `connect-src ${[...new Set(connect)].join(' ')}`,
    "manifest-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

export function connectSrcFromEnv(env: NodeJS.ProcessEnv): string[] {
  const extra = (env[DASHBOARD_CONNECT_SRC_ENV] ?? '').split(/[\s,]+/).filter(Boolean);
  const serving = (env.EDGEFL_SERVING_URLS ?? '')
    .split(',')
    .map((u) => u.trim())
    .filter(Boolean)
    .flatMap((u) => {
      try {
        return [new URL(u).origin];
      } catch {
        return [];
      }
    });
  return [...extra, ...serving];
}

/** A CSP source expression without characters that could end the directive or inject another. */
function isSafeSource(s: string): boolean {
  return /^[\w.*:/'-]+$/.test(s) && !s.includes(';');
}
