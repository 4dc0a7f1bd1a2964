import { initBackend } from '../core/backend.js';
import { encodeWeights } from '../core/codec.js';
import { loadConfig } from '../shared/config.js';
import { buildModel, countParams, evaluate, getFlatWeights, modelSpec } from '../core/model.js';
import { trainLocal } from '../core/train.js';
import { loadDataset, partition } from '../../datasets/index.js';
import { subset } from '../../datasets/types.js';
import { envFromFlags, SERVICE_FLAGS } from './args.js';
import { BYOM_UP_FLAGS } from './byom-flags.js';
import { readLayersModelFile } from '../core/layers-model.js';
import { builtinModel } from '../core/model-zoo.js';
import { REFERENCE_CNN } from '../core/model-spec.js';
import { HELP_FLAG, flagHelp, int, num, oneOf, parseFlags, toggle, type Flags } from './flags.js';

const JSON_FLAG = { json: toggle('print JSON instead of text') };
const SUMMARY_FLAGS = { model: BYOM_UP_FLAGS.model, ...JSON_FLAG, ...HELP_FLAG };
const INSPECT_FLAGS = { ...SERVICE_FLAGS, ...JSON_FLAG, ...HELP_FLAG };
const TRAIN_LOCAL_FLAGS = {
  ...SERVICE_FLAGS,
  epochs: int('epochs', { min: 1, max: 1000, default: 3 }),
  'batch-size': int('batch size', { min: 1, max: 4096, default: 32 }),
  'learning-rate': num('learning rate', { above: 0, max: 10, default: 0.001, arg: 'LR' }),
  optimizer: oneOf(['adam', 'sgd'], '', { default: 'adam' }),
  samples: int('train on the first N samples only', { min: 1 }),
  ...JSON_FLAG,
  ...HELP_FLAG,
};

/** Prints `usage` and the flag table; the exit code of a --help. */
function help(usage: string, flags: Flags): number {
  console.log(`${usage}\n\n${flagHelp(flags)}`);
  return 0;
}

export async function modelSummary(argv: string[]): Promise<number> {
  const values = parseFlags(SUMMARY_FLAGS, argv);
  if (values.help) return help('edgefl model summary [--model FILE] [--json]', SUMMARY_FLAGS);
  const spec = values.model ? (builtinModel(values.model) ?? readLayersModelFile(values.model).spec) : REFERENCE_CNN;
  const model = buildModel(1, spec);
  const params = countParams(model);
  const flat = getFlatWeights(model);
  const bytes = { float32: encodeWeights(modelSpec(model), flat).length, float16: encodeWeights(modelSpec(model), flat, 'float16').length };
  if (values.json) {
    const layers = model.layers.map((l) => ({ name: l.name, type: l.getClassName(), outputShape: l.outputShape, params: l.countParams() }));
    console.log(JSON.stringify({ name: spec.name, inputShape: spec.inputShape, classes: spec.classes, params, weightBytes: bytes, layers, tensors: modelSpec(model) }));
    return 0;
  }
  const lines: string[] = [];
  model.summary(90, [0.35, 0.4, 0.25], (line) => lines.push(line));
  console.log(`model '${spec.name}': input ${spec.inputShape.join('x')}, ${spec.classes} classes`);
  console.log(lines.join('\n'));
  console.log(`parameters: ${params.toLocaleString('en-US')}; weights: ${fmtBytes(bytes.float32)} as float32, ${fmtBytes(bytes.float16)} as float16 (codec bytes)`);
  return 0;
}

export async function dataInspect(argv: string[]): Promise<number> {
  const values = parseFlags(INSPECT_FLAGS, argv);
  if (values.help) return help('edgefl data inspect [flags]: label histograms of each node\'s shard', INSPECT_FLAGS);
  const cfg = loadConfig({ ...process.env, ...envFromFlags(values) });
  const split = loadDataset({ dataset: cfg.data.dataset, idxDir: cfg.data.idxDir, testSize: cfg.data.testSize, seed: cfg.data.seed });
  const shards = partition(split.train.labels, split.train.numClasses, { ...cfg.partition });
  if (values.json) {
    console.log(
      JSON.stringify({
        dataset: split.name,
        train: split.train.count,
        test: split.test.count,
        shape: [split.train.rows, split.train.cols],
        classes: split.train.numClasses,
        partition: cfg.partition,
        nodes: shards.map((s, i) => ({ node: `node-${i}`, samples: s.indices.length, histogram: s.histogram })),
      }),
    );
    return 0;
  }
  console.log(`dataset ${split.name}: ${split.train.count} train / ${split.test.count} held-out, ${split.train.rows}x${split.train.cols}, ${split.train.numClasses} classes`);
  console.log(`partition ${cfg.partition.kind}${cfg.partition.kind === 'dirichlet' ? ` alpha=${cfg.partition.alpha}` : ''} over ${cfg.partition.nodes} nodes (seed ${cfg.partition.seed}):`);
  console.log(`node      samples  ${Array.from({ length: split.train.numClasses }, (_, c) => String(c).padStart(5)).join('')}`);
  shards.forEach((s, i) => console.log(`node-${i}`.padEnd(10) + String(s.indices.length).padStart(7) + '  ' + s.histogram.map((h) => String(h).padStart(5)).join('')));
  return 0;
}

export async function trainLocalCommand(argv: string[]): Promise<number> {
  const values = parseFlags(TRAIN_LOCAL_FLAGS, argv);
  if (values.help) return help('edgefl train-local [flags]: centralised baseline on one machine', TRAIN_LOCAL_FLAGS);
  const cfg = loadConfig({ ...process.env, ...envFromFlags(values) });
  const json = values.json;
  const say = (line: string) => {
    if (!json) console.log(line);
  };
  const backend = await initBackend(cfg.backend, say);
  const split = loadDataset({ dataset: cfg.data.dataset, idxDir: cfg.data.idxDir, testSize: cfg.data.testSize, seed: cfg.data.seed });
  const samples = Math.min(values.samples ?? split.train.count, split.train.count);
  const train = samples < split.train.count ? subset(split.train, Array.from({ length: samples }, (_, i) => i)) : split.train;
  const model = buildModel(1);
  say(`training on ${train.count} samples of ${split.name} (${backend.name} backend), evaluating on ${split.test.count} held-out`);
  const epochs: { epoch: number; loss: number; accuracy: number; samplesPerSecond: number; heldOutAccuracy: number; heldOutLoss: number }[] = [];
  const bar = !json && process.stdout.isTTY;
  const result = await trainLocal(model, train, {
    epochs: values.epochs,
    batchSize: values['batch-size'],
    learningRate: values['learning-rate'],
    optimizer: values.optimizer,
    onProgress: bar
      ? (epoch, done, total) => {
          if (done % 320 !== 0 && done !== total) return;
          const width = 30;
          const filled = Math.round((done / total) * width);
          process.stdout.write(`\repoch ${epoch} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}`);
        }
      : undefined,
    onEpoch: (epoch, loss, accuracy, samplesPerSecond) => {
      const test = evaluate(model, split.test.images, split.test.labels);
      epochs.push({ epoch, loss, accuracy, samplesPerSecond, heldOutAccuracy: test.accuracy, heldOutLoss: test.loss });
      if (bar) process.stdout.write('\r\x1b[K');
      say(`epoch ${epoch}: train loss ${loss.toFixed(4)} acc ${pct(accuracy)} | held-out loss ${test.loss.toFixed(4)} acc ${pct(test.accuracy)} | ${Math.round(samplesPerSecond)} samples/s`);
    },
  });
  const final = evaluate(model, split.test.images, split.test.labels);
  if (json) {
    console.log(JSON.stringify({ backend: backend.name, dataset: split.name, samples: train.count, epochs, heldOutAccuracy: final.accuracy, heldOutLoss: final.loss, durationMs: Math.round(result.durationMs), samplesPerSecond: Math.round(result.samplesPerSecond) }));
  } else {
    say(`done in ${(result.durationMs / 1000).toFixed(1)} s (${Math.round(result.samplesPerSecond)} samples/s); held-out accuracy ${pct(final.accuracy)}`);
  }
  return 0;
}

const pct = (x: number) => `${(x * 100).toFixed(2)}%`;
const fmtBytes = (n: number) => `${(n / 1024 / 1024).toFixed(2)} MiB`;
