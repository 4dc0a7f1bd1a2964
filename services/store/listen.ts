import pg from 'pg';
import { MODEL_CHANNEL } from './model-store.js';

/**
 * Calls `onVersion` for every published model version. Uses one dedicated connection
 * (LISTEN does not work through a pool) and reconnects with backoff when PostgreSQL
 * restarts; after reconnecting it calls `onReconnect` so the caller can catch up on
 * anything published while it was away.
 */
export function listenForModels(url: string, onVersion: (v: number) => void, onReconnect: () => void, log: (m: string) => void): { close(): Promise<void> } {
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
      const v = Number(n.payload);
      if (n.channel === MODEL_CHANNEL && Number.isInteger(v)) onVersion(v);
    });
    try {
      await c.connect();
      await c.query(`LISTEN ${MODEL_CHANNEL}`);
      delay = 250;
      onReconnect();
    } catch (e) {
      log(`model listener could not connect: ${(e as Error).message}`);
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
