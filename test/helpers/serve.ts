import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Express } from 'express';

/** An HTTP server a test started on loopback. */
export interface Running {
  url: string;
  port: number;
  server: http.Server;
  close(): Promise<void>;
}

/** The one way tests listen: an Express app or a plain handler on 127.0.0.1 (port 0 unless told). */
interface ServeOptions {
  port?: number;
  keepAliveTimeout?: number;
}

export function serve(handler: http.RequestListener, opts?: ServeOptions): Promise<Running>;
export function serve(handler: Express, opts?: ServeOptions): Promise<Running>;
export async function serve(handler: http.RequestListener | Express, opts: ServeOptions = {}): Promise<Running> {
  const server = http.createServer(handler as http.RequestListener);
  if (opts.keepAliveTimeout !== undefined) server.keepAliveTimeout = opts.keepAliveTimeout;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The servers of one test file: `listen` like serve, `closeAll` in afterAll. */
export function serverGroup() {
  const running: Running[] = [];
  return {
    async listen(handler: http.RequestListener | Express, opts?: ServeOptions): Promise<Running> {
      const r = await serve(handler as http.RequestListener, opts);
      running.push(r);
      return r;
    },
    closeAll: () => Promise.all(running.splice(0).map((r) => r.close())),
  };
}
