import type pg from 'pg';
import { inTransaction } from './transaction.js';
import { ASYNC_UPDATES_SQL } from './async-updates.js';
import { SECAGG_MIGRATION_SQL } from './secagg.js';

/**
 * Versioned schema. Append new entries; never edit an applied one. Applied under a
 * transaction-scoped advisory lock so several services starting at once (a Knative
 * scale-up) do not race each other.
 */
export const MIGRATIONS: { version: number; name: string; sql: string }[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: `
      CREATE TABLE model_versions (
        version        bigserial PRIMARY KEY,
        parent_version bigint REFERENCES model_versions(version),
        run_id         text,
        round          integer,
        bytes          bytea NOT NULL,
        manifest       jsonb NOT NULL,
        checksum       text NOT NULL,
        dtype          text NOT NULL DEFAULT 'float32',
        metrics        jsonb NOT NULL DEFAULT '{}',
        created_at     timestamptz NOT NULL DEFAULT now()
      );
      CREATE TABLE runs (
        id           text PRIMARY KEY,
        status       text NOT NULL CHECK (status IN ('pending','running','completed','stopped','failed')),
        config       jsonb NOT NULL,
        stop_reason  text,
        current_round integer NOT NULL DEFAULT 0,
        best_accuracy double precision,
        initial_version bigint REFERENCES model_versions(version),
        latest_version  bigint REFERENCES model_versions(version),
        stop_requested boolean NOT NULL DEFAULT false,
        created_at   timestamptz NOT NULL DEFAULT now(),
        updated_at   timestamptz NOT NULL DEFAULT now()
      );
      CREATE TABLE rounds (
        run_id        text NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        round         integer NOT NULL,
        status        text NOT NULL CHECK (status IN ('running','completed','failed')),
        config        jsonb NOT NULL,
        base_version  bigint NOT NULL REFERENCES model_versions(version),
        global_version bigint REFERENCES model_versions(version),
        selected      text[] NOT NULL,
        quorum        integer NOT NULL,
        deadline      timestamptz NOT NULL,
        metrics       jsonb NOT NULL DEFAULT '{}',
        attempt       integer NOT NULL DEFAULT 1,
        started_at    timestamptz NOT NULL DEFAULT now(),
        finished_at   timestamptz,
        PRIMARY KEY (run_id, round)
      );
      CREATE TABLE client_updates (
        id            bigserial PRIMARY KEY,
        run_id        text NOT NULL,
        round         integer NOT NULL,
        node_id       text NOT NULL,
        base_version  bigint NOT NULL REFERENCES model_versions(version),
        bytes         bytea NOT NULL,
        checksum      text NOT NULL,
        sample_count  integer NOT NULL CHECK (sample_count > 0),
        metrics       jsonb NOT NULL DEFAULT '{}',
        duration_ms   double precision NOT NULL,
        created_at    timestamptz NOT NULL DEFAULT now(),
        UNIQUE (run_id, round, node_id)
      );
      CREATE TABLE nodes (
        id              text PRIMARY KEY,
        last_seen       timestamptz NOT NULL DEFAULT now(),
        shard_size      integer NOT NULL,
        label_histogram jsonb NOT NULL,
        info            jsonb NOT NULL DEFAULT '{}'
      );
      CREATE INDEX model_versions_run ON model_versions (run_id, round);
    `,
  },
  {
    version: 2,
    name: 'server-side strategy state (FedAvgM momentum) survives a resume',
    sql: `ALTER TABLE runs ADD COLUMN strategy_state bytea;`,
  },
  {
    version: 3,
    name: 'model lifecycle: promotions decide what serves; retention prunes candidates',
    // No foreign key from promotions to model_versions: the history outlives a pruned
    // candidate's weights. promote() checks the version under a row lock instead.
    sql: `
      CREATE TABLE promotions (
        id          bigserial PRIMARY KEY,
        version     bigint NOT NULL,
        nodes       text[],
        promoted_by text NOT NULL,
        reason      text NOT NULL,
        figures     jsonb NOT NULL DEFAULT '{}',
        run_id      text,
        promoted_at timestamptz NOT NULL DEFAULT now(),
        CHECK (nodes IS NULL OR cardinality(nodes) > 0)
      );
      CREATE INDEX promotions_version ON promotions (version);
      ALTER TABLE model_versions ADD COLUMN pruned_at timestamptz;
      -- An upgraded database keeps serving what it served: the newest version, now promoted.
      INSERT INTO promotions (version, promoted_by, reason)
        SELECT max(version), 'migration', 'served before promotions existed (the newest version)' FROM model_versions HAVING max(version) IS NOT NULL;
    `,
  },
  {
    version: 4,
    name: 'serving functions report what they serve (no probe wakes a function scaled to zero)',
    sql: `
      CREATE TABLE serving_status (
        node_id     text PRIMARY KEY,
        version     bigint,
        canary      boolean NOT NULL DEFAULT false,
        reported_at timestamptz NOT NULL DEFAULT now()
      );
    `,
  },
  {
    version: 5,
    name: 'privacy ledger: every DP mechanism a node ran, to account its spent epsilon across rounds and runs',
    sql: `
      CREATE TABLE privacy_ledger (
        id               bigserial PRIMARY KEY,
        node_id          text NOT NULL,
        run_id           text NOT NULL,
        round            integer NOT NULL,
        mechanism        text NOT NULL CHECK (mechanism IN ('dp-sgd')),
        sampling_rate    double precision NOT NULL CHECK (sampling_rate > 0 AND sampling_rate <= 1),
        noise_multiplier double precision NOT NULL CHECK (noise_multiplier > 0),
        steps            integer NOT NULL CHECK (steps >= 0),
        delta            double precision NOT NULL CHECK (delta > 0 AND delta < 1),
        epsilon_total    double precision NOT NULL,
        created_at       timestamptz NOT NULL DEFAULT now(),
        UNIQUE (node_id, run_id, round)
      );
    `,
  },
  {
    version: 6,
    name: 'event-driven inference: one result or error record per image, keyed by request id (store/predictions.ts)',
    sql: `
      CREATE TABLE predictions (
        request_id    text NOT NULL,
        item          integer NOT NULL CHECK (item >= 0),
        node_id       text NOT NULL,
        source        text,
        model_version bigint,
        class         smallint,
        probabilities jsonb,
        error_code    text,
        error_message text,
        latency_ms    double precision NOT NULL,
        created_at    timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (request_id, item),
        CHECK ((class IS NULL) <> (error_code IS NULL))
      );
      CREATE INDEX predictions_node_recent ON predictions (node_id, created_at DESC);
    `,
  },
  { version: 7, name: 'secure aggregation: round keys, sealed shares, masked inputs, unmask answers', sql: SECAGG_MIGRATION_SQL },
  {
    version: 8,
    name: "each run's model (a user's Layers model or the reference CNN), which trainers and serving build from",
    sql: `CREATE TABLE run_models (run_id text PRIMARY KEY, spec jsonb NOT NULL, source text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());`,
  },
  {
    version: 9,
    name: 'asynchronous aggregation (fedbuff): every invocation, its base version, staleness and fate',
    sql: ASYNC_UPDATES_SQL,
  },
];

const LOCK_KEY = 0x6564_6766; // "edgf"

export async function migrate(pool: pg.Pool): Promise<number[]> {
  return inTransaction(pool, async (client) => {
    // One migrator at a time: functions starting together against a fresh database would race.
    await client.query('SELECT pg_advisory_xact_lock($1)', [LOCK_KEY]);
    await client.query('CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())');
    const done = new Set((await client.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map((r) => r.version));
    const applied: number[] = [];
    for (const m of [...MIGRATIONS].sort((a, b) => a.version - b.version)) {
      if (done.has(m.version)) continue;
      await client.query(m.sql);
      await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
      applied.push(m.version);
    }
    return applied;
  });
}
