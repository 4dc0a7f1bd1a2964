import pg from 'pg';
import { MODEL_CHANNEL } from './model-store.js';
import { PROMOTION_CHANNEL } from './promotion.js';

export interface Listener {
  close(): Promise<void>;
}

/**
 * Calls `onPayload` for every NOTIFY on `channel`. Uses one dedicated connection
 * (LISTEN does not work through a pool) and reconnects with backoff when PostgreSQL
 * restarts; after reconnecting it calls `onReconnect` so the caller can catch up on
 * anything announced while it was away.
 */
export function listenOn(url: string, channel: string, onPayload: (payload: string) => void, onReconnect: () => void, log: (m: string) => void): Listener {
  let client: pg.Client | undefined;
  let closed = false;
  let delay = 250;
  let timer: NodeJS.Timeout | undefined;

  const connect = async () => {
    if (closed) return;
    const c = new pg.Client({ connectionString: url });
    client = c;
    c.on('error', () => {});
    c.on('end', () => {
      if (!closed) schedule();
    });
    c.on('notification', (n) => {
      if (n.channel === channel) onPayload(n.payload ?? '');
    });
    try {
      await c.connect();
      await c.query(`LISTEN ${channel}`);
      delay = 250;
      onReconnect();
    } catch (e) {
      log(`listener on ${channel} could not connect: ${(e as Error).message}`);
      c.end().catch(() => {});
      schedule();
    }
  };
  const schedule = () => {
    if (closed || timer) return;
    timer = setTimeout(() => {
      timer = undefined;
      void connect();
    }, delay);
    timer.unref();
    delay = Math.min(delay * 2, 5000);
  };
  void connect();
  return {
    async close() {
      closed = true;
      if (timer) clearTimeout(timer);
      await client?.end().catch(() => {});
    },
  };
}

/** Every published model version (a candidate). */
export function listenForModels(url: string, onVersion: (v: number) => void, onReconnect: () => void, log: (m: string) => void): Listener {
  return listenOn(url, MODEL_CHANNEL, (payload) => {
    const v = Number(payload);
    if (Number.isInteger(v)) onVersion(v);
  }, onReconnect, log);
}

export interface PromotionNotice {
  id: number;
  version: number;
  nodes: string[] | null;
}

/** Every promotion (fleet or canary); the payload is only a hint, the promotions table decides. */
export function listenForPromotions(url: string, onPromotion: (p: PromotionNotice) => void, onReconnect: () => void, log: (m: string) => void): Listener {
  return listenOn(url, PROMOTION_CHANNEL, (payload) => {
    try {
      const p = JSON.parse(payload) as PromotionNotice;
      if (Number.isInteger(p.version)) onPromotion(p);
    } catch {
      // not ours
    }
  }, onReconnect, log);
}
