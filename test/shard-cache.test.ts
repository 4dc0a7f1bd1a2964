import { readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../services/shared/config.js';
import { loadNodeShard } from '../services/core/node-data.js';
import { cachedNodeShard, decodeShard, encodeShard, shardCacheKey, shardFile } from '../services/trainer/shard-cache.js';
import { useTmpDirs } from './helpers/tmp-dirs.js';

const tmpDir = useTmpDirs('edgefl-shards-');
const quiet = () => {};

describe('the partition cache an on-demand trainer reads its shard from', () => {
  it('gives every node exactly the shard loadNodeShard cuts, written once for all nodes', async () => {
    const dir = await tmpDir();
    const env = { EDGEFL_DATA_DIR: dir, EDGEFL_NODES: '7', EDGEFL_PARTITION: 'dirichlet', EDGEFL_ALPHA: '0.5', EDGEFL_MAX_TRAIN_SAMPLES: '300' };
    const logged: string[] = [];
    const where: unknown[] = [];
    const first = await cachedNodeShard(loadConfig({ ...env, EDGEFL_NODE_ID: '3' }), (m, fields) => (logged.push(m), where.push(fields?.in)));
    expect(logged).toEqual(['cut the partition once for every node']);
    // The dataset is decoded in a worker thread, whose memory goes when it exits (not in the trainer's RSS).
    expect(where).toEqual(['a worker thread']);
    const cacheDir = path.join(dir, 'shards', shardCacheKey(loadConfig(env)));
    expect(readdirSync(cacheDir).sort()).toEqual(Array.from({ length: 7 }, (_, i) => `node-${i}.bin`).sort());
    for (const node of [0, 3, 6]) {
      const cfg = loadConfig({ ...env, EDGEFL_NODE_ID: String(node) });
      const cached = await cachedNodeShard(cfg, (m) => logged.push(m));
      const direct = loadNodeShard(cfg).shard;
      expect(cached.count).toBe(direct.count);
      expect(Buffer.from(cached.images.buffer).equals(Buffer.from(direct.images.buffer))).toBe(true);
      expect([...cached.labels]).toEqual([...direct.labels]);
    }
    expect(first.count).toBe(loadNodeShard(loadConfig({ ...env, EDGEFL_NODE_ID: '3' })).shard.count);
    expect(logged).toHaveLength(1); // the later nodes read their files
  });

  it('keys the cache on the partition: another seed or node count never reads the old files', () => {
    const base = loadConfig({ EDGEFL_DATA_DIR: '/x', EDGEFL_NODES: '7' });
    expect(shardCacheKey(loadConfig({ EDGEFL_DATA_DIR: '/x', EDGEFL_NODES: '8' }))).not.toBe(shardCacheKey(base));
    expect(shardCacheKey(loadConfig({ EDGEFL_DATA_DIR: '/x', EDGEFL_NODES: '7', EDGEFL_SEED: '1' }))).not.toBe(shardCacheKey(base));
    expect(shardCacheKey(loadConfig({ EDGEFL_DATA_DIR: '/x', EDGEFL_NODES: '7', EDGEFL_MAX_TRAIN_SAMPLES: '5' }))).not.toBe(shardCacheKey(base));
  });

  it('cuts again when a file is damaged, and stores k/255 pixels as bytes without changing them', async () => {
    const dir = await tmpDir();
    const cfg = loadConfig({ EDGEFL_DATA_DIR: dir, EDGEFL_NODES: '4', EDGEFL_NODE_ID: '1' });
    const good = await cachedNodeShard(cfg, quiet);
    writeFileSync(shardFile(path.join(dir, 'shards', shardCacheKey(cfg)), 1), 'edgefl-shard-1\ntruncated');
    const logged: string[] = [];
    expect((await cachedNodeShard(cfg, (m) => logged.push(m))).count).toBe(good.count);
    expect(logged).toEqual(['cut the partition once for every node']);

    const bytes = { images: Float32Array.from([0, 3 / 255, 1, 128 / 255]), labels: Uint8Array.from([2]), count: 1, rows: 2, cols: 2, numClasses: 10 };
    const encoded = encodeShard(bytes);
    expect(decodeShard(encoded)).toEqual(bytes);
    const floats = { ...bytes, images: Float32Array.from([0.149, 0.5, 0.992, 1]) };
    expect(encodeShard(floats).length - encoded.length).toBeGreaterThanOrEqual(3 * 4); // one byte per pixel, not four
    expect(decodeShard(encodeShard(floats))).toEqual(floats);
  });
});
