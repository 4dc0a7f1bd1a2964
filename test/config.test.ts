import { describe, it, expect } from 'vitest';
import path from 'node:path';
import { ConfigError, DEFAULT_PORTS, ENV, ROLES, loadConfig } from '../services/shared/config.js';

function configError(env: Record<string, string>, message: RegExp): void {
  let caught: unknown;
  try {
    loadConfig(env);
  } catch (e) {
    caught = e;
  }
  expect(caught, `expected a ConfigError for ${JSON.stringify(env)}`).toBeInstanceOf(ConfigError);
  expect((caught as Error).message).toMatch(message);
}

describe('loadConfig defaults', () => {
  const cfg = loadConfig({});

  it('uses the documented defaults for an empty environment', () => {
    expect(cfg.nodeId).toBe(0);
    expect(cfg.partition).toEqual({ kind: 'dirichlet', nodes: 3, alpha: 0.5, shardsPerNode: 2, seed: 42 });
    expect(cfg.data).toEqual({ dataset: 'mnist', idxDir: undefined, testSize: 2000, seed: 42, maxTrainSamples: 0 });
    expect(cfg.port).toBe(8080);
    expect(cfg.backend).toBeUndefined();
    expect(cfg.dataDir).toBe(path.resolve('.edgefl'));
    expect(cfg.maxBatch).toBe(10_000);
    expect(cfg.maxBodyBytes).toBe(64 * 1024 * 1024);
    expect(cfg.apiKeys).toEqual([]);
    expect(cfg.trainerUrls).toEqual([]);
    expect(cfg.servingUrls).toEqual([]);
    expect(cfg.discovery).toBe('static');
    expect(cfg.namespace).toBe('edgefl');
    expect(cfg.logLevel).toBe('info');
    expect(cfg.databaseUrl).toBeUndefined();
    expect(cfg.invokeSecret).toBeUndefined();
    expect(cfg.adminToken).toBeUndefined();
  });

  it('picks the per-role default port unless PORT is set', () => {
    for (const role of ROLES) expect(loadConfig({}, role).port).toBe(DEFAULT_PORTS[role]);
    expect(new Set(Object.values(DEFAULT_PORTS)).size).toBe(ROLES.length);
    expect(loadConfig({ PORT: '9000' }, 'trainer').port).toBe(9000);
  });

  it('treats empty strings as unset', () => {
    const env = Object.fromEntries(Object.values(ENV).map((name) => [name, '']));
    expect(loadConfig(env)).toEqual(cfg);
  });
});

describe('loadConfig reads the environment', () => {
  it('parses every kind of value', () => {
    const cfg = loadConfig({
      [ENV.nodes]: '5',
      [ENV.nodeId]: '4',
      [ENV.seed]: '7',
      [ENV.partition]: 'shards',
      [ENV.alpha]: '0.1',
      [ENV.shardsPerNode]: '3',
      [ENV.dataset]: 'idx',
      [ENV.idxDir]: '/data/fashion',
      [ENV.testSize]: '500',
      [ENV.maxTrainSamples]: '1000',
      [ENV.backend]: 'cpu',
      [ENV.apiKeys]: ' a, b ,,c ',
      [ENV.trainerUrls]: 'http://t0,http://t1',
      [ENV.discovery]: 'kube',
      [ENV.namespace]: 'fl',
      [ENV.logLevel]: 'debug',
      [ENV.dataDir]: 'some/dir',
      [ENV.databaseUrl]: 'postgres://x',
    });
    expect(cfg.nodeId).toBe(4);
    expect(cfg.partition).toEqual({ kind: 'shards', nodes: 5, alpha: 0.1, shardsPerNode: 3, seed: 7 });
    expect(cfg.data).toEqual({ dataset: 'idx', idxDir: '/data/fashion', testSize: 500, seed: 7, maxTrainSamples: 1000 });
    expect(cfg.backend).toBe('cpu');
    expect(cfg.apiKeys).toEqual(['a', 'b', 'c']);
    expect(cfg.trainerUrls).toEqual(['http://t0', 'http://t1']);
    expect(cfg.discovery).toBe('kube');
    expect(cfg.namespace).toBe('fl');
    expect(cfg.logLevel).toBe('debug');
    expect(cfg.dataDir).toBe(path.resolve('some/dir'));
    expect(cfg.databaseUrl).toBe('postgres://x');
  });

  it('accepts "auto" as no forced backend', () => {
    expect(loadConfig({ [ENV.backend]: 'auto' }).backend).toBeUndefined();
  });
});

describe('loadConfig errors', () => {
  it('rejects values that are not decimal integers', () => {
    for (const bad of ['abc', '1.5', '3x', '1e3', '0x10', ' ', 'NaN', 'Infinity', '99999999999999999999']) {
      configError({ [ENV.nodes]: bad }, new RegExp(`EDGEFL_NODES must be an integer >= 1; got '${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}'`));
    }
    configError({ [ENV.port]: '80.5' }, /PORT must be an integer >= 0/);
    configError({ [ENV.seed]: 'seven' }, /EDGEFL_SEED must be an integer/);
  });

  it('rejects integers below their minimum', () => {
    configError({ [ENV.nodes]: '0' }, /EDGEFL_NODES must be an integer >= 1; got '0'/);
    configError({ [ENV.nodeId]: '-1' }, /EDGEFL_NODE_ID must be an integer >= 0; got '-1'/);
    configError({ [ENV.shardsPerNode]: '0' }, /EDGEFL_SHARDS_PER_NODE must be an integer >= 1/);
    configError({ [ENV.testSize]: '0' }, /EDGEFL_TEST_SIZE must be an integer >= 1/);
    configError({ [ENV.maxBodyBytes]: '100' }, /EDGEFL_MAX_BODY_BYTES must be an integer >= 1024/);
    configError({ [ENV.maxBatch]: '0' }, /EDGEFL_MAX_BATCH must be an integer >= 1/);
  });

  it('rejects a node id at or above the node count', () => {
    configError({ [ENV.nodes]: '3', [ENV.nodeId]: '3' }, /EDGEFL_NODE_ID=3 must be below EDGEFL_NODES=3/);
    configError({ [ENV.nodeId]: '5' }, /EDGEFL_NODE_ID=5 must be below EDGEFL_NODES=3/);
    expect(loadConfig({ [ENV.nodes]: '3', [ENV.nodeId]: '2' }).nodeId).toBe(2);
  });

  it('rejects an unknown partition, dataset, discovery or log level', () => {
    configError({ [ENV.partition]: 'random' }, /EDGEFL_PARTITION must be one of iid, dirichlet, shards, none; got 'random'/);
    configError({ [ENV.dataset]: 'cifar' }, /EDGEFL_DATASET must be one of mnist, idx; got 'cifar'/);
    configError({ [ENV.discovery]: 'dns' }, /EDGEFL_DISCOVERY must be one of static, kube/);
    configError({ [ENV.logLevel]: 'trace' }, /EDGEFL_LOG_LEVEL must be one of debug, info, warn, error/);
  });

  it('rejects the idx dataset without a directory', () => {
    configError({ [ENV.dataset]: 'idx' }, /EDGEFL_DATASET=idx needs EDGEFL_IDX_DIR/);
    configError({ [ENV.dataset]: 'idx', [ENV.idxDir]: '' }, /needs EDGEFL_IDX_DIR/);
  });

  it('rejects a non-positive or non-numeric alpha', () => {
    for (const bad of ['0', '-0.5', 'abc', 'Infinity']) configError({ [ENV.alpha]: bad }, /EDGEFL_ALPHA must be a positive number/);
  });

  it('rejects an unknown backend with a ConfigError', () => {
    configError({ [ENV.backend]: 'webgl' }, /EDGEFL_BACKEND must be one of auto, tensorflow, wasm, cpu; got 'webgl'/);
  });
});
