import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { openDatabase, type Database } from '../services/store/database.js';

declare module 'vitest' {
  export interface ProvidedContext {
    databaseUrl: string;
  }
}

let db: Database | undefined;
let dir: string | undefined;

/**
 * One real PostgreSQL for the whole suite: DATABASE_URL when set, else an embedded
 * server in a temporary directory. Each test file then creates its own database in it.
 */
export async function setup(project: TestProject) {
  if (process.env.DATABASE_URL) {
    project.provide('databaseUrl', process.env.DATABASE_URL);
    return;
  }
  dir = mkdtempSync(path.join(os.tmpdir(), 'edgefl-test-'));
  // As root the server runs as the postgres user, who must be able to enter this directory.
  chmodSync(dir, 0o755);
  db = await openDatabase({ dataDir: dir, stopEmbeddedOnClose: true });
  project.provide('databaseUrl', db.url);
}

export async function teardown() {
  await db?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
}
