import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { decodeStoredWeights, decodeWeights, encodeWeights, sha256Hex, CodecError } from '../services/core/codec.js';
import type { Logger } from '../services/shared/log.js';
import type { Metrics } from '../services/shared/metrics.js';
import { buildModel, evaluate, getFlatWeights, referenceModelSpec, setFlatWeights, type EvalResult } from '../services/core/model.js';
import type { tfl } from '../services/core/tf.js';
import type { ImageSet } from '../datasets/types.js';
import { createRng } from '../datasets/rng.js';
import * as store from '../services/store/model-store.js';
import { isConnectionError } from '../services/store/database.js';
import { invokeTrainer, type InvokeOutcome, type TrainerTarget } from './invoke.js';
import { clipToNorm, createStrategy, l2Distance, type Strategy } from './strategies.js';
import type { RunConfig } from './run-config.js';
import { PolicyPromoter, splitHeldOut, type PromotePolicy } from './promotion.js';
import { insertPromotion } from '../services/store/promotion.js';

export interface NodeRoundResult {
  nodeId: string;
  status: 'ok' | 'failed' | 'late' | 'rejected_update';
  reason?: string;
  samples?: number;
  loss?: number;
  accuracy?: number;
  durationMs?: number;
  samplesPerSecond?: number;
  updateNorm?: number;
  clipped?: boolean;
  attempts?: number;
}

export interface RoundSummary {
  runId: string;
  round: number;
  status: 'completed' | 'failed';
  modelVersion: number | null;
  globalAccuracy: number | null;
  globalLoss: number | null;
  participants: string[];
  stragglers: string[];
  nodes: NodeRoundResult[];
  durationMs: number;
  trainingMs: number;
  aggregationMs: number;
  evaluationMs: number;
  overheadShare: number;
  /** The deciding figure (globalAccuracy is the same number, kept for older readers) and the reported test score. */
  validationAccuracy?: number | null;
  testAccuracy?: number | null;
  testLoss?: number | null;
  /** Whether the run's promotion policy promoted this round's model, and why (not). */
  promoted?: boolean;
  promotionReason?: string;
}

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
}

/**
 * Runs FedAvg-style training runs. All state lives in PostgreSQL, so a new aggregator
 * process resumes a run where the last one stopped: a completed round is never redone,
 * and a round in progress is re-entered (trainers answer a repeat with the update they
 * already stored). A session advisory lock per run keeps two aggregators off one run.
 */
export class Federation extends EventEmitter {
  private readonly active = new Map<string, AbortController>();
  private readonly evalModel: tfl.LayersModel = buildModel(1);
  /** Validation digits decide (target, patience, promotion); test digits are only reported. */
  private readonly heldOut;
  private readonly promoter: PolicyPromoter;

  constructor(private readonly deps: FederationDeps) {
    super();
    this.heldOut = splitHeldOut(deps.heldOut);
    this.promoter = new PolicyPromoter({ pool: deps.pool, validate: (flat) => this.evaluateFlat(flat) });
  }

  async startRun(config: RunConfig): Promise<store.RunRow> {
    const runId = `run-${new Date().toISOString().slice(0, 19).replace(/[-:T]/g, '')}-${randomUUID().slice(0, 6)}`;
    let initialVersion: number | undefined;
    if (config.init === 'latest') initialVersion = await store.latestVersion(this.deps.pool);
    if (initialVersion === undefined) {
      const model = buildModel(config.seed);
      const flat = getFlatWeights(model);
      model.dispose();
      const bytes = encodeWeights(referenceModelSpec(), flat);
      const evalResult = this.evaluateFlat(flat);
      initialVersion = await store.publishModel(this.deps.pool, {
        bytes,
        checksum: sha256Hex(bytes),
        manifest: { tensors: referenceModelSpec() },
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

  /** Picks up every run left 'running' by a previous aggregator process. */
  async resumeAll(): Promise<string[]> {
    const runs = await store.runsInProgress(this.deps.pool);
    for (const run of runs) {
      this.deps.log.info('resuming run', { run_id: run.id, round: run.currentRound });
      void this.drive(run.id);
    }
    return runs.map((r) => r.id);
  }

  async stop(runId: string): Promise<boolean> {
    const ok = await store.requestStop(this.deps.pool, runId);
    this.active.get(runId)?.abort();
    return ok;
  }

  isDriving(runId: string): boolean {
    return this.active.has(runId);
  }

  /** Waits for every run this process drives (tests, `edgefl up`). */
  async idle(): Promise<void> {
    while (this.active.size) await new Promise((r) => setTimeout(r, 100));
  }

  async shutdown(): Promise<void> {
    for (const c of this.active.values()) c.abort();
    await this.idle();
    this.evalModel.dispose();
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
          await store.finishRun(this.deps.pool, runId, 'failed', `aggregator error: ${(e as Error).message}`).catch(() => {});
          break;
        }
      }
      // A stop request aborts the in-flight round; the run must still end as 'stopped'
      // (a process shutdown aborts too, but leaves the run 'running' for the next process).
      const after = await store.getRun(this.deps.pool, runId).catch(() => undefined);
      if (after?.status === 'running' && after.stopRequested) await this.finish(runId, 'stopped', 'stop requested').catch(() => {});
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

  private async loop(runId: string, signal: AbortSignal, lockLost: () => Error | undefined = () => undefined): Promise<void> {
    const run = (await store.getRun(this.deps.pool, runId))!;
    const config = run.config as RunConfig;
    const strategy = createStrategy(config.strategy, config);
    const savedState = strategy.loadState ? await store.getStrategyState(this.deps.pool, runId) : undefined;
    if (savedState) strategy.loadState!(savedState);
    const history = (await store.listRounds(this.deps.pool, runId)).filter((r) => r.status === 'completed');
    let best = -1;
    let sinceBest = 0;
    for (const r of history) {
      const acc = Number(r.metrics.globalAccuracy ?? -1);
      if (acc > best) {
        best = acc;
        sinceBest = 0;
      } else sinceBest++;
    }
    let round = history.length ? Math.max(...history.map((r) => r.round)) + 1 : 1;
    let attempts = 0;
    while (!signal.aborted) {
      const lost = lockLost();
      if (lost) throw connectionLost(lost);
      const current = (await store.getRun(this.deps.pool, runId))!;
      if (current.status !== 'running') return;
      if (current.stopRequested) return this.finish(runId, 'stopped', 'stop requested');
      if (round > config.rounds) return this.finish(runId, 'completed', `reached the maximum of ${config.rounds} rounds`);
      const summary = await this.runRound(current, config, strategy, round, signal);
      if (signal.aborted) return;
      if (summary.status === 'failed') {
        attempts++;
        if (attempts >= config.maxRoundAttempts) return this.finish(runId, 'failed', `round ${round} failed ${attempts} times: quorum of ${config.minQuorum} not reached`);
        continue;
      }
      attempts = 0;
      const acc = summary.globalAccuracy ?? 0;
      if (acc > best) {
        best = acc;
        sinceBest = 0;
      } else sinceBest++;
      if (acc >= config.targetAccuracy) return this.finish(runId, 'completed', `target accuracy ${config.targetAccuracy} reached in round ${round}`);
      if (sinceBest >= config.patience) return this.finish(runId, 'completed', `no improvement for ${config.patience} rounds`);
      round++;
    }
  }

  private async finish(runId: string, status: store.RunStatus, reason: string): Promise<void> {
    await store.finishRun(this.deps.pool, runId, status, reason);
    this.deps.log.info('run finished', { run_id: runId, status, reason });
  }

  private async runRound(run: store.RunRow, config: RunConfig, strategy: Strategy, round: number, signal: AbortSignal): Promise<RoundSummary> {
    const started = Date.now();
    const log = this.deps.log.child({ run_id: run.id, round });
    const existing = await store.getRound(this.deps.pool, run.id, round);
    const baseVersion = existing?.status === 'running' ? existing.baseVersion : run.latestVersion!;
    const all = await this.deps.trainers();
    const eligible = config.nodes ? all.filter((t) => config.nodes!.includes(t.nodeId)) : all;
    const selected = existing?.status === 'running' ? eligible.filter((t) => existing.selected.includes(t.nodeId)) : selectNodes(eligible, config.fraction, config.seed, round);
    const quorum = Math.min(config.minQuorum, Math.max(1, selected.length));
    const deadline = existing?.status === 'running' && Date.parse(existing.deadline) > Date.now() ? new Date(existing.deadline) : new Date(Date.now() + config.roundTimeoutS * 1000);
    const roundRow = await store.openRound(this.deps.pool, {
      runId: run.id,
      round,
      config: { epochs: config.epochs, batchSize: config.batchSize, learningRate: config.learningRate, strategy: config.strategy },
      baseVersion,
      selected: selected.map((t) => t.nodeId),
      quorum,
      deadline,
    });
    if (roundRow.status === 'running' && Date.parse(roundRow.deadline) < deadline.getTime()) await store.extendRoundDeadline(this.deps.pool, run.id, round, deadline);
    log.info('round started', { base_version: baseVersion, selected: selected.map((t) => t.nodeId), deadline: deadline.toISOString() });
    this.emit('round-start', { runId: run.id, round, selected: selected.map((t) => t.nodeId), baseVersion });

    const payload = {
      runId: run.id,
      round,
      modelVersion: baseVersion,
      epochs: config.epochs,
      batchSize: config.batchSize,
      learningRate: config.learningRate,
      optimizer: config.optimizer,
      ...strategy.trainerParams(),
      deadline: deadline.toISOString(),
      seed: config.seed,
    };
    const outcomes = new Map<string, InvokeOutcome>();
    await Promise.all(
      selected.map(async (t) => {
        const outcome = await invokeTrainer(t, payload, {
          deadline,
          secret: this.deps.invokeSecret,
          signal,
          backoffMs: this.deps.retryBackoffMs,
          requestId: `${run.id}-r${round}-${t.nodeId}`,
          brokerUrl: this.deps.brokerUrl,
          findUpdate: async () => {
            const u = await store.findUpdate(this.deps.pool, run.id, round, t.nodeId);
            return u && u.baseVersion === baseVersion ? { updateId: u.id, metrics: u.metrics } : undefined;
          },
        });
        outcomes.set(t.nodeId, outcome);
        if (!outcome.ok) {
          log.warn('node did not deliver', { node: t.nodeId, reason: outcome.reason, detail: outcome.detail, attempts: outcome.attempts });
          this.deps.metrics?.roundFailures.inc({ node: t.nodeId, reason: outcome.reason });
        }
      }),
    );
    if (signal.aborted) return this.failedSummary(run.id, round, started, []);

    // Count what is in the store, not what answered: an update stored just before a lost reply still counts.
    const updates = (await store.listUpdates(this.deps.pool, run.id, round)).filter(
      (u) => u.baseVersion === baseVersion && selected.some((t) => t.nodeId === u.nodeId) && Date.parse(u.createdAt) <= deadline.getTime() + 1000,
    );
    const nodes: NodeRoundResult[] = selected.map((t) => {
      const u = updates.find((x) => x.nodeId === t.nodeId);
      const o = outcomes.get(t.nodeId);
      if (u) return { nodeId: t.nodeId, status: 'ok', samples: u.sampleCount, loss: u.metrics.loss, accuracy: u.metrics.accuracy, durationMs: u.durationMs, samplesPerSecond: u.metrics.samplesPerSecond, attempts: o?.attempts };
      return { nodeId: t.nodeId, status: o && !o.ok && o.reason === 'deadline' ? 'late' : 'failed', reason: o && !o.ok ? o.detail : 'no update stored', attempts: o?.attempts };
    });

    const aggStart = Date.now();
    const base = await store.getModel(this.deps.pool, baseVersion);
    const global = decodeWeights(base!.bytes, referenceModelSpec()).flat;
    const aggregator = strategy.begin(global);
    let accepted = 0;
    for (const u of updates) {
      const node = nodes.find((n) => n.nodeId === u.nodeId)!;
      const bytes = await store.getUpdateBytes(this.deps.pool, u.id);
      let weights: Float32Array;
      try {
        if (!bytes) throw new Error('update bytes are missing');
        if (!(Number.isSafeInteger(u.sampleCount) && u.sampleCount > 0)) throw new Error(`invalid sample count ${u.sampleCount}`);
        weights = decodeStoredWeights(bytes, u.checksum, referenceModelSpec()).flat;
      } catch (e) {
        Object.assign(node, { status: 'rejected_update', reason: e instanceof CodecError ? `${e.code}: ${e.message}` : String(e) });
        this.deps.metrics?.roundFailures.inc({ node: u.nodeId, reason: 'rejected_update' });
        continue;
      }
      const norm = l2Distance(weights, global);
      node.updateNorm = norm;
      if (config.maxUpdateNorm !== null && norm > config.maxUpdateNorm) {
        if (config.normPolicy === 'reject') {
          Object.assign(node, { status: 'rejected_update', reason: `update norm ${norm.toFixed(2)} exceeds ${config.maxUpdateNorm}` });
          this.deps.metrics?.roundFailures.inc({ node: u.nodeId, reason: 'rejected_update' });
          continue;
        }
        weights = clipToNorm(weights, global, config.maxUpdateNorm, norm);
        node.clipped = true;
      }
      aggregator.add(weights, u.sampleCount);
      accepted++;
    }
    const participants = nodes.filter((n) => n.status === 'ok').map((n) => n.nodeId);
    const stragglers = nodes.filter((n) => n.status === 'late' || n.status === 'failed').map((n) => n.nodeId);
    if (accepted < quorum) {
      const metrics = { nodes, participants, stragglers, reason: `only ${accepted} of ${selected.length} nodes delivered; quorum is ${quorum}` };
      await store.failRound(this.deps.pool, run.id, round, metrics);
      log.warn('round failed', metrics);
      this.deps.metrics?.rounds.inc({ status: 'failed' });
      this.deps.metrics?.roundSeconds.observe((Date.now() - started) / 1000);
      this.deps.metrics?.roundParticipants.set(accepted);
      this.deps.metrics?.roundFailedNodes.set(selected.length - accepted);
      const summary = this.failedSummary(run.id, round, started, nodes);
      this.emit('round', summary);
      return summary;
    }
    const next = aggregator.result();
    const aggregationMs = Date.now() - aggStart;
    const evalStart = Date.now();
    const evalResult = this.evaluateFlat(next);
    const testResult = this.evaluateFlat(next, this.heldOut.test);
    const evaluationMs = Date.now() - evalStart;
    const policy = ((config as { promote?: PromotePolicy }).promote ?? 'best') as PromotePolicy;
    const { decision, promotion } = await this.promoter.decide({
      round,
      policy,
      minImprovement: (config as { minImprovement?: number }).minImprovement ?? 0,
      validationAccuracy: evalResult.accuracy,
      testAccuracy: testResult.accuracy,
    });
    const bytes = encodeWeights(referenceModelSpec(), next);
    const trainingMs = Math.max(0, ...nodes.filter((n) => n.status === 'ok').map((n) => n.durationMs ?? 0));
    const durationMs = Date.now() - started;
    const summaryMetrics = {
      globalAccuracy: evalResult.accuracy,
      globalLoss: evalResult.loss,
      evaluatedOn: evalResult.samples,
      validationAccuracy: evalResult.accuracy,
      testAccuracy: testResult.accuracy,
      testLoss: testResult.loss,
      testedOn: testResult.samples,
      promoted: decision.promote,
      promotionReason: decision.reason,
      participants,
      stragglers,
      nodes,
      durationMs,
      trainingMs,
      aggregationMs,
      evaluationMs,
      overheadShare: durationMs > 0 ? Math.max(0, 1 - trainingMs / durationMs) : 0,
    };
    const best = Math.max(evalResult.accuracy, run.bestAccuracy ?? 0);
    const version = await store.completeRound(
      this.deps.pool,
      run.id,
      round,
      {
        bytes,
        checksum: sha256Hex(bytes),
        manifest: { tensors: referenceModelSpec() },
        parentVersion: baseVersion,
        runId: run.id,
        round,
        metrics: { accuracy: evalResult.accuracy, loss: evalResult.loss, samples: evalResult.samples, participants: participants.length, validationAccuracy: evalResult.accuracy, testAccuracy: testResult.accuracy },
      },
      summaryMetrics,
      best,
      strategy.saveState?.(),
      promotion && { record: (c, v) => insertPromotion(c, { ...promotion, version: v, runId: run.id }) },
    );
    this.promoter.scoredAs(version, evalResult.accuracy);
    if (promotion) {
      this.deps.metrics?.promotedVersion.set(version);
      log.info('model promoted', { model_version: version, reason: decision.reason });
    }
    this.deps.metrics?.roundSeconds.observe(durationMs / 1000);
    this.deps.metrics?.roundParticipants.set(participants.length);
    this.deps.metrics?.roundFailedNodes.set(selected.length - accepted);
    this.deps.metrics?.rounds.inc({ status: 'completed' });
    this.deps.metrics?.modelVersion.set(version);
    this.deps.metrics?.aggregationSeconds.observe(aggregationMs / 1000);
    this.deps.metrics?.globalAccuracy.set(evalResult.accuracy);
    const summary: RoundSummary = { runId: run.id, round, status: 'completed', modelVersion: version, ...summaryMetrics };
    log.info('round completed', { model_version: version, accuracy: evalResult.accuracy, loss: evalResult.loss, participants, duration_ms: durationMs });
    this.emit('round', summary);
    return summary;
  }

  private failedSummary(runId: string, round: number, started: number, nodes: NodeRoundResult[]): RoundSummary {
    return {
      runId,
      round,
      status: 'failed',
      modelVersion: null,
      globalAccuracy: null,
      globalLoss: null,
      participants: [],
      stragglers: nodes.filter((n) => n.status !== 'ok').map((n) => n.nodeId),
      nodes,
      durationMs: Date.now() - started,
      trainingMs: 0,
      aggregationMs: 0,
      evaluationMs: 0,
      overheadShare: 1,
    };
  }

  /** Accuracy on the validation digits (the deciding figure), or on `on`. */
  evaluateFlat(flat: Float32Array, on: ImageSet = this.heldOut.validation): EvalResult {
    setFlatWeights(this.evalModel, flat);
    return evaluate(this.evalModel, on.images, on.labels);
  }
}

function connectionLost(cause: Error): Error {
  return Object.assign(new Error(`lost the run's lock connection: ${cause.message}`), { code: '57P01' });
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

/** A seeded sample of ⌈fraction·n⌉ nodes (at least one), different each round, reproducible per run. */
export function selectNodes<T>(nodes: readonly T[], fraction: number, seed: number, round: number): T[] {
  const k = Math.max(1, Math.ceil(fraction * nodes.length));
  if (k >= nodes.length) return [...nodes];
  const rng = createRng(seed * 1_000_003 + round);
  const idx = nodes.map((_, i) => i);
  for (let i = idx.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [idx[i], idx[j]] = [idx[j]!, idx[i]!];
  }
  return idx.slice(0, k).sort((a, b) => a - b).map((i) => nodes[i]!);
}
