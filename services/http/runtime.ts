import { createServer, type RequestListener, type Server } from 'node:http';
import type { Logger } from '../shared/log.js';
import { closeGracefully, trackConnections } from './common.js';

/**
 * Listens and wires SIGTERM/SIGINT to a graceful drain, as Knative expects of a revision's pods.
 * `drainTimeoutMs` bounds how long requests in flight may still run after the signal: Knative
 * grants a pod its revision's timeoutSeconds, so a role with long requests passes that.
 */
export function listen(app: RequestListener, { port, host }: { port: number; host: string }, log: Logger, onClose: () => Promise<void> = async () => {}, handleSignals = true, drainTimeoutMs = 20_000): Promise<Server> {
  return new Promise((resolve, reject) => {
    // An Express app is a request listener too; serving's handler puts its direct routes in front of one.
    const server = createServer(app).listen(port, host);
    const connections = trackConnections(server);
    server.requestTimeout = 15 * 60_000;
    server.headersTimeout = 30_000;
    server.keepAliveTimeout = 65_000;
    server.once('error', reject);
    server.once('listening', () => {
      const addr = server.address();
      // The address is logged: binding every interface (EDGEFL_HOST=0.0.0.0, as in a pod) is a choice to see.
      log.info('listening', { host, port: typeof addr === 'object' && addr ? addr.port : port });
      let stopping = false;
      const stop = async (signal: string) => {
        if (stopping) return;
        stopping = true;
        log.info('shutting down', { signal });
        await closeGracefully(server, connections, drainTimeoutMs);
        await onClose().catch((e) => log.warn('error during shutdown', { err: e }));
        process.exit(0);
      };
      if (handleSignals) {
        process.once('SIGTERM', () => void stop('SIGTERM'));
        process.once('SIGINT', () => void stop('SIGINT'));
      }
      resolve(server);
    });
  });
}

export function portOf(server: Server): number {
  const addr = server.address();
  return typeof addr === 'object' && addr ? addr.port : 0;
}
