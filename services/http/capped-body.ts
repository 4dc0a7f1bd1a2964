import type { IncomingMessage } from 'node:http';

/**
 * Buffers a request body up to `maxBytes`. Past the limit it stops keeping chunks at once (the
 * rest is drained, not stored) and rejects with `tooLarge()`, so a huge body costs no memory.
 */
export function readCappedBody(req: IncomingMessage, maxBytes: number, tooLarge: () => Error, aborted: () => Error = () => new Error('the request body was not received completely')): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > maxBytes) {
        req.removeAllListeners('data');
        req.resume();
        reject(tooLarge());
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', () => reject(aborted()));
  });
}
