/**
 * The optional Knative Eventing transport: a Broker, one Trigger per edge node routing
 * `round.train` events to its trainer, one routing `update.ready` replies to the aggregator,
 * and the SinkBinding that tells the aggregator the Broker's URL.
 *
 * Delivery is bounded and never silent: each train Trigger retries with exponential backoff,
 * waits as long as a trainer may train (timeout), and dead-letters what still fails to the
 * aggregator (aggregator/dead-letter.ts), which counts it, logs it and republishes it while the
 * round is open.
 */
import { Broker, Trigger } from '@kubernetes-models/knative/eventing.knative.dev/v1';
import { SinkBinding } from '@kubernetes-models/knative/sources.knative.dev/v1';
import { EVENTING, LABELS, NAMES, PART_OF } from './constants.js';
import { isoSeconds, type ResolvedOptions } from './options.js';
import { labels } from './workloads.js';

export const BROKER_CLASS_ANNOTATION = 'eventing.knative.dev/broker.class';

/** Retries per delivery of a train event; the aggregator republishes a dead letter on top (bounded there). */
export const TRAIN_DELIVERY_RETRIES = 3;

export function brokerObjects(opts: ResolvedOptions) {
  return [
    new Broker({
      metadata: {
        name: EVENTING.broker,
        namespace: opts.namespace,
        labels: { [LABELS.partOf]: PART_OF },
        // Named, not left to the cluster default, so what durability a round gets is a visible choice.
        annotations: { [BROKER_CLASS_ANNOTATION]: opts.brokerClass },
      },
    }),
  ];
}

const aggregatorRef = { apiVersion: 'v1', kind: 'Service', name: NAMES.aggregator };

// Informational: the update itself is already in PostgreSQL, so no dead-letter sink (it would be
// this same aggregator); retries cover an aggregator restart.
const updateReadyDelivery = { retry: 5, backoffPolicy: 'exponential', backoffDelay: 'PT1S', timeout: 'PT10S' };

export function triggerObjects(opts: ResolvedOptions) {
  const triggers: Trigger[] = [];
  for (let node = 0; node < opts.nodes; node++) {
    triggers.push(nodeTrigger(opts, node, { name: `edgefl-train-${node}`, role: 'trainer', type: EVENTING.trainType, service: NAMES.trainer(node), delivery: trainDelivery(opts) }));
  }
  triggers.push(...inferenceTriggers(opts));
  triggers.push(
    new Trigger({
      metadata: { name: 'edgefl-update-ready', namespace: opts.namespace, labels: labels('aggregator') },
      spec: {
        broker: EVENTING.broker,
        filter: { attributes: { type: EVENTING.updateReadyType } },
        // ref + relative uri: Knative appends the path to the resolved Service address.
        subscriber: { ref: aggregatorRef, uri: EVENTING.aggregatorPath },
        delivery: updateReadyDelivery,
      },
    }),
  );
  return triggers;
}

/**
 * One Trigger per edge node for event-driven inference: `dev.edgefl.inference.requested` with
 * `edgeflnode: "N"` → `edgefl-serving-N` at `/`. Its reply, `dev.edgefl.inference.completed`,
 * goes back to the Broker for whatever Trigger the user adds. Redelivery is safe (results are
 * stored once per request id); the retries cover a cold start and a restart mid-batch.
 */
export function inferenceTriggers(opts: ResolvedOptions): Trigger[] {
  return Array.from({ length: opts.nodes }, (_, node) =>
    nodeTrigger(opts, node, { name: `edgefl-inference-${node}`, role: 'serving', type: EVENTING.inferenceType, service: NAMES.serving(node), delivery: inferenceDelivery }),
  );
}

/** A Trigger for one edge node's events (type + `edgeflnode: "N"`) to that node's Knative Service. */
function nodeTrigger(opts: ResolvedOptions, node: number, t: { name: string; role: 'trainer' | 'serving'; type: string; service: string; delivery: object }): Trigger {
  return new Trigger({
    metadata: { name: t.name, namespace: opts.namespace, labels: labels(t.role, node) },
    spec: {
      broker: EVENTING.broker,
      filter: { attributes: { type: t.type, [EVENTING.nodeAttribute]: String(node) } },
      subscriber: { ref: { apiVersion: 'serving.knative.dev/v1', kind: 'Service', name: t.service } },
      delivery: t.delivery,
    },
  });
}

const inferenceDelivery = { retry: 10, backoffPolicy: 'exponential', backoffDelay: 'PT1S', timeout: 'PT120S' };

/*
 * The delivery specs are typed locally: the models package predates DeliverySpec.timeout
 * (Eventing feature `delivery-timeout`, beta and on by default), and would refuse the field
 * in an object literal although its schema accepts it.
 */
function trainDelivery(opts: ResolvedOptions) {
  return {
    // A redelivery reaching a trainer that already stored its update gets that update back,
    // so retries are safe; backoff gives a cold start (seconds) time to finish.
    retry: TRAIN_DELIVERY_RETRIES,
    backoffPolicy: 'exponential',
    backoffDelay: 'PT2S',
    // Training answers only when done: a shorter timeout would retry into a busy trainer.
    timeout: isoSeconds(opts.trainerTimeoutSeconds),
    deadLetterSink: { ref: aggregatorRef, uri: EVENTING.deadLetterPath },
  };
}


/** Injects K_SINK (the broker URL) into the aggregator so it can publish round.train events. */
export function sinkBindingObjects(opts: ResolvedOptions) {
  return [
    new SinkBinding({
      metadata: { name: NAMES.aggregator, namespace: opts.namespace, labels: labels('aggregator') },
      spec: {
        subject: { apiVersion: 'apps/v1', kind: 'Deployment', name: NAMES.aggregator },
        sink: { ref: { apiVersion: 'eventing.knative.dev/v1', kind: 'Broker', name: EVENTING.broker } },
      },
    }),
  ];
}
