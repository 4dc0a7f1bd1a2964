import http from 'node:http';
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { initBackend } from '../../services/core/backend.js';
import { buildModel } from '../../services/core/model.js';
import { createLogger } from '../../services/shared/log.js';
import { createTrainerApp } from '../../services/trainer/app.js';
import type { ImageSet } from '../../datasets/types.js';
import { serve, type Running } from './serve.js';

/** Every log line the services of a test wrote, to check that none reveals an update. */
export const logLines: string[] = [];
export const capturingLog = (base: Record<string, unknown>) => createLogger(base, 'debug', (l) => logLines.push(l));

/** A trainer with its invocation secret and its own long-term node secret. */
export async function secureTrainer(pool: pg.Pool, nodeId: string, shard: ImageSet, invokeSecret: string): Promise<Running> {
  await initBackend();
  return serve(createTrainerApp({ pool, nodeId, shard, model: buildModel(1), log: capturingLog({ node: nodeId }), invokeSecret, nodeSecret: randomBytes(32) }));
}

export type StageHook = (stage: string | undefined, data: Record<string, any>, forward: () => Promise<{ status: number; headers: Headers; body: string }>, res: http.ServerResponse) => Promise<void>;

/** A front for a trainer that lets a test act on each protocol stage (drop, delay, tamper) before or after forwarding it. */
export async function stageInterceptor(target: () => string, hook: StageHook): Promise<Running> {
  return serve(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    let data: Record<string, any> = {};
    try {
      data = JSON.parse(body.toString('utf8'));
    } catch {
      /* not JSON: forwarded as is */
    }
    const headers = Object.fromEntries(Object.entries(req.headers).filter(([k]) => !['host', 'content-length', 'connection'].includes(k)).map(([k, v]) => [k, String(v)]));
    const forward = async () => {
      const r = await fetch(target(), { method: 'POST', headers, body });
      return { status: r.status, headers: r.headers, body: await r.text() };
    };
    try {
      await hook(data.secagg?.stage, data, forward, res);
    } catch (e) {
      if (!res.headersSent) res.writeHead(500).end(String(e));
    }
  });
}

/** Forwards and relays the trainer's answer. */
export async function relay(forward: () => Promise<Forwarded>, res: http.ServerResponse): Promise<void> {
  send(await forward(), res);
}

type Forwarded = { status: number; headers: Headers; body: string };

/** Sends a forwarded answer on. */
export function send(r: Forwarded, res: http.ServerResponse): void {
  res.writeHead(r.status, Object.fromEntries([...r.headers.entries()].filter(([k]) => k.startsWith('ce-') || k === 'content-type'))).end(r.body);
}
