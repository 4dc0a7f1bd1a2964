import { setTimeout as timeout } from 'node:timers/promises';
import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { encodeStoredWeights } from '../services/core/codec.js';
import type { Logger } from '../services/shared/log.js';
import type { Metrics } from '../services/shared/metrics.js';
import { tensorSpecsOf } from '../services/core/model.js';
import { RunModels, type DeploymentModel } from './run-models.js';
import type { ImageSet } from '../datasets/types.js';
import * as store from '../services/store/model-store.js';
import { promotedFor } from '../services/store/promotion.js';
import { isConnectionError } from '../services/store/database.js';
import type { TrainerTarget } from './invoke.js';
import { createStrategy } from './strategies.js';
import type { RunConfig } from './run-config.js';
import { privacySpent } from './privacy-budget.js';
import { decideNext } from './round/decide.js';
import { runAsync } from './async/driver.js';
import type { AsyncStrategy } from './async/state.js';
import { runRound } from './round/driver.js';
import { createEvaluator, type Evaluator } from './round/evaluate.js';
import type { RoundContext } from './round/types.js';
import { PolicyPromoter } from './promotion.js';

export type { NodeRoundResult, RoundSummary } from './round/types.js';
export { selectNodes } from './round/plan.js';

export interface FederationDeps {
  pool: pg.Pool;
  log: Logger;
  heldOut: ImageSet;
  /** Current trainer endpoints (static list or cluster discovery). */
  trainers: () => Promise<TrainerTarget[]>;
  invokeSecret?: string;
  metrics?: Metrics;
  /** Test hook: backoff of trainer retries. */
  retryBackoffMs?: number;
  /** Knative Eventing Broker URL (K_SINK); rounds then travel as events through it. */
  brokerUrl?: string;
  /** The deployment's model (EDGEFL_MODEL); unset: the reference CNN, unless a run names its own. */
  model?: DeploymentModel;
}

/** What the run does next, with the run and its rounds as read to decide it. */
type RunStep = ({ finish: false; round: number } | { finish: true; status: 'completed' | 'failed' | 'stopped'; reason: string }) & { rows: store.RoundRow[]; current: store.RunRow };

/** Why a run's controller was aborted: a user's abort ends the run; a shutdown leaves it for the next process. */
const ABORTED_BY_USER = 'aborted by request';
const SHUTDOWN = 'shutdown';

/**
 * The lifecycle of training runs: start, resume, stop, abort, one advisory lock per run,
 * and riding out database outages. Each round is `runRound` (aggregator/round/). All state
 * lives in PostgreSQL, so a new aggregator process resumes a run where the last one
 * stopped: a completed round is never redone, and a round in progress is re-entered
 * (trainers answer a repeat with the update they already stored).
 */
export class Federation extends EventEmitter {
  private readonly active = new Map<string, AbortController>();
  private readonly evaluator: Evaluator;
  private readonly ctx: RoundContext;
  private readonly models: RunModels;

  constructor(private readonly deps: FederationDeps) {
    super();
    this.evaluator = createEvaluator(deps.heldOut);
    this.models = new RunModels({ pool: deps.pool, heldOut: deps.heldOut, deployment: deps.model });
    this.ctx = {
      pool: deps.pool,
      log: deps.log,
      metrics: deps.metrics,
      trainers: deps.trainers,
      evaluate: (flat) => this.evaluator.evaluate(flat),
      test: (flat) => this.evaluator.test(flat),
      promotion: new PolicyPromoter({ pool: deps.pool, validate: (flat) => this.evaluator.evaluate(flat) }),
      invoke: { secret: deps.invokeSecret, backoffMs: deps.retryBackoffMs, brokerUrl: deps.brokerUrl },
      emit: (event, data) => this.emit(event, data),
    };
  }

  async startRun(config: RunConfig): Promise<store.RunRow> {
    const runId = `run-${new Date().toISOString().slice(0, 19).replace(/[-:T]/g, '')}-${randomUUID().slice(0, 6)}`;
    const spec = this.models.specFor(config);
    this.models.checkHeldOut(spec);
    let initialVersion: number | undefined;
    if (config.init === 'latest') initialVersion = await store.latestVersion(this.deps.pool);
    if (config.init === 'promoted') initialVersion = (await promotedFor(this.deps.pool))?.version;
    // A version of another model cannot seed this one: start fresh instead.
    if (initialVersion !== undefined && !(await this.models.versionFits(initialVersion, spec))) initialVersion = undefined;
    await this.models.save(runId, spec);
    if (initialVersion === undefined) {
      const flat = this.models.initialWeights(spec, config.seed);
      const evalResult = this.models.evaluatorFor(spec, this.ctx).evaluate(flat);
      initialVersion = await store.publishModel(this.deps.pool, {
        ...encodeStoredWeights(tensorSpecsOf(spec), flat),
        runId,
        round: 0,
        metrics: { accuracy: evalResult.accuracy, loss: evalResult.loss, samples: evalResult.samples, initial: true },
      });
    }
    const run = await store.createRun(this.deps.pool, runId, config as unknown as Record<string, unknown>, initialVersion);
    this.deps.log.info('run started', { run_id: runId, initial_version: initialVersion, config });
    this.emit('run', run);
    void this.drive(runId);
    return run;
  }

  /** Closes rounds left open by runs that have ended, then picks up every run left 'running' by a previous process. */
  async resumeAll(): Promise<string[]> {
    const closed = await store.closeRoundsOfEndedRuns(this.deps.pool, 'the run ended while this round was open');
    if (closed) this.deps.log.warn('closed rounds of ended runs', { rounds: closed });
    const runs = await store.runsInProgress(this.deps.pool);
    for (const run of runs) {
      this.deps.log.info('resuming run', { run_id: run.id, round: run.currentRound });
      void this.drive(run.id);
    }
    return runs.map((r) => r.id);
  }

  /** Stops the run after its current round (that round still completes or fails as it would). */
  async stop(runId: string): Promise<boolean> {
    return store.requestStop(this.deps.pool, runId);
  }

  /** Stops the run now: the round in progress is closed as failed and publishes nothing. */
  async abort(runId: string): Promise<boolean> {
    if (!(await store.requestStop(this.deps.pool, runId))) return false;
    this.active.get(runId)?.abort(ABORTED_BY_USER);
    await this.finish(runId, 'stopped', ABORTED_BY_USER);
    return true;
  }

  isDriving(runId: string): boolean {
    return this.active.has(runId);
  }

  /** Waits for every run this process drives (tests, `edgefl up`). */
  async idle(): Promise<void> {
    while (this.active.size) await new Promise((r) => setTimeout(r, 100));
  }

  async shutdown(): Promise<void> {
    for (const c of this.active.values()) c.abort(SHUTDOWN);
    await this.idle();
    this.evaluator.dispose();
    this.models.dispose();
  }

  private async drive(runId: string): Promise<void> {
    if (this.active.has(runId)) return;
    const controller = new AbortController();
    this.active.set(runId, controller);
    try {
      // A database outage (PostgreSQL restarting) must not fail the run: all state is in the
      // store, so once it is back the run is simply re-entered where it stood.
      let delay = 500;
      for (;;) {
        try {
          await this.driveOnce(runId, controller.signal);
          break;
        } catch (e) {
          if (controller.signal.aborted) break;
          if (isConnectionError(e)) {
            this.deps.log.warn('database unavailable while driving the run; resuming when it is back', { run_id: runId, err: (e as Error).message, retry_ms: delay });
            await sleep(delay, controller.signal);
            delay = Math.min(delay * 2, 5000);
            continue;
          }
          this.deps.log.error('run failed', { run_id: runId, err: e });
          await this.finish(runId, 'failed', `aggregator error: ${(e as Error).message}`).catch(() => {});
          break;
        }
      }
    } finally {
      this.active.delete(runId);
      const run = await store.getRun(this.deps.pool, runId).catch(() => undefined);
      if (run) this.emit('run', run);
    }
  }

  /** One session driving the run, under an advisory lock held on a dedicated connection. */
  private async driveOnce(runId: string, signal: AbortSignal): Promise<void> {
    const lockClient = await this.deps.pool.connect();
    let lost: Error | undefined;
    // A checked-out client has no error listener: without one, PostgreSQL restarting while
    // the run holds its lock would crash the process with an unhandled 'error' event.
    const onError = (e: Error) => {
      lost = e;
    };
    lockClient.on('error', onError);
    try {
      const lock = await lockClient.query('SELECT pg_try_advisory_lock(hashtext($1)) AS ok', [runId]);
      if (!lock.rows[0].ok) {
        this.deps.log.warn('another aggregator is driving this run', { run_id: runId });
        return;
      }
      await this.loop(runId, signal, () => lost);
      if (lost) throw connectionLost(lost);
    } finally {
      if (!lost) await lockClient.query('SELECT pg_advisory_unlock(hashtext($1))', [runId]).catch(() => {});
      lockClient.removeListener('error', onError);
      lockClient.release(lost ?? undefined);
    }
  }

  /** Round after round until the rounds table says the run is done (decideNext), a stop is requested or the run ends. */
  private async loop(runId: string, signal: AbortSignal, lockLost: () => Error | undefined): Promise<void> {
    const run = (await store.getRun(this.deps.pool, runId))!;
    const config = run.config as RunConfig;
    const strategy = createStrategy(config.strategy, config);
    const savedState = strategy.loadState ? await store.getStrategyState(this.deps.pool, runId) : undefined;
    if (savedState) strategy.loadState!(savedState);
    // The run's own model (its spec, evaluator and weight manifest), not necessarily the deployment's.
    const ctx = await this.models.contextFor(runId, this.ctx);
    // No rounds for an asynchronous strategy: its driver asks the same question after every aggregation.
    if (strategy.async) {
      const end = await runAsync(ctx, runId, strategy as AsyncStrategy, signal, async () => {
        const next = await this.nextStep(runId, config, lockLost);
        return !next ? 'ended' : next.finish ? { status: next.status, reason: next.reason } : undefined;
      });
      return end && this.finish(runId, end.status, end.reason);
    }
    while (!signal.aborted) {
      const next = await this.nextStep(runId, config, lockLost);
      if (!next) return;
      if (next.finish) return this.finish(runId, next.status, next.reason);
      const spent = config.dp ? await privacySpent(this.deps.pool, await this.deps.trainers(), config, runId, next.rows.filter((r) => r.status === 'completed').length) : undefined;
      if (spent) return this.finish(runId, 'completed', spent);
      strategy.observeRounds?.(next.rows);
      const summary = await runRound(ctx, next.current, strategy, next.round, signal);
      // Cut short by an abort (here or by another process): the round must not stay open once the run has ended.
      if (!summary && signal.reason !== SHUTDOWN) await store.failRound(this.deps.pool, runId, next.round, { reason: ABORTED_BY_USER });
    }
  }

  /** What the run does next (undefined: it is no longer running): a requested stop, or decideNext on its rounds table. */
  private async nextStep(runId: string, config: RunConfig, lockLost: () => Error | undefined): Promise<RunStep | undefined> {
    const lost = lockLost();
    if (lost) throw connectionLost(lost);
    const current = (await store.getRun(this.deps.pool, runId))!;
    if (current.status !== 'running') return undefined;
    if (current.stopRequested) return { finish: true, status: 'stopped', reason: 'stop requested', rows: [], current };
    const rows = await store.listRounds(this.deps.pool, runId);
    const next = decideNext(
      rows.map((r) => ({ round: r.round, status: r.status, attempt: r.attempt, accuracy: r.metrics.globalAccuracy ?? null, reason: r.metrics.reason })),
      config,
    );
    return { ...next, rows, current };
  }

  /** Ends the run; its open round (if any) is closed first, so no round outlives its run even across a crash. */
  private async finish(runId: string, status: store.RunStatus, reason: string): Promise<void> {
    const run = await store.getRun(this.deps.pool, runId);
    if (run?.status !== 'running') return;
    await store.failRound(this.deps.pool, runId, run.currentRound, { reason: `run ${status}: ${reason}` });
    await store.finishRun(this.deps.pool, runId, status, reason);
    this.deps.log.info('run finished', { run_id: runId, status, reason });
  }
}

function connectionLost(cause: Error): Error {
  return Object.assign(new Error(`lost the run's lock connection: ${cause.message}`), { code: '57P01' });
}

/** Waits `ms`, or less once `signal` aborts; never throws (the caller checks the signal). */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return timeout(ms, undefined, { signal }).catch(() => undefined);
}
