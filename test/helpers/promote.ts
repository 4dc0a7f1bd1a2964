import type pg from 'pg';
import * as store from '../../services/store/model-store.js';
import { promote } from '../../services/store/promotion.js';

/** Publishes a version and promotes it to the fleet, as an admin would: serving loads only promoted versions. */
export async function publishPromoted(pool: pg.Pool, m: store.NewModelVersion): Promise<number> {
  const version = await store.publishModel(pool, m);
  await promote(pool, { version, by: 'test', reason: 'published by the test' });
  return version;
}
