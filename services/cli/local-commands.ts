import { initBackend } from '../shared/backend.js';
import { loadConfig } from '../shared/config.js';
import { buildModel, countParams, evaluate } from '../shared/model.js';
import { trainLocal } from '../shared/train.js';
import { loadDataset, partition } from '../../datasets/index.js';
import { envFromFlags, num, parse, serviceOptions } from './args.js';

export async function modelSummary(): Promise<number> {
  const model = buildModel(1);
  const lines: string[] = [];
  model.summary(100, [0.4, 0.35, 0.25], (line) => lines.push(line));
  console.log(lines.join('\n'));
  console.log(`parameters: ${countParams(model).toLocaleString('en-US')}`);
  return 0;
}

export async function dataInspect(argv: string[]): Promise<number> {
  const values = parse(argv, serviceOptions);
  const cfg = loadConfig({ ...process.env, ...envFromFlags(values) });
  const split = loadDataset({ dataset: cfg.data.dataset, idxDir: cfg.data.idxDir, testSize: cfg.data.testSize, seed: cfg.data.seed });
  console.log(`dataset ${split.name}: ${split.train.count} train / ${split.test.count} held-out, ${split.train.rows}x${split.train.cols}, ${split.train.numClasses} classes`);
  const shards = partition(split.train.labels, split.train.numClasses, { ...cfg.partition });
  console.log(`partition ${cfg.partition.kind}${cfg.partition.kind === 'dirichlet' ? ` alpha=${cfg.partition.alpha}` : ''} over ${cfg.partition.nodes} nodes (seed ${cfg.partition.seed}):`);
  console.log(`node      samples  ${Array.from({ length: split.train.numClasses }, (_, c) => String(c).padStart(5)).join('')}`);
  shards.forEach((s, i) => console.log(`node-${i}`.padEnd(10) + String(s.indices.length).padStart(7) + '  ' + s.histogram.map((h) => String(h).padStart(5)).join('')));
  return 0;
}

export async function trainLocalCommand(argv: string[]): Promise<number> {
  const values = parse(argv, {
    ...serviceOptions,
    epochs: { type: 'string' },
    'batch-size': { type: 'string' },
    'learning-rate': { type: 'string' },
    optimizer: { type: 'string' },
    samples: { type: 'string' },
  });
  const cfg = loadConfig({ ...process.env, ...envFromFlags(values) });
  const backend = await initBackend(cfg.backend, (m) => console.log(m));
  const split = loadDataset({ dataset: cfg.data.dataset, idxDir: cfg.data.idxDir, testSize: cfg.data.testSize, seed: cfg.data.seed });
  const samples = num(values, 'samples', split.train.count);
  const train = samples < split.train.count ? { ...split.train, images: split.train.images.subarray(0, samples * 784), labels: split.train.labels.subarray(0, samples), count: samples } : split.train;
  const model = buildModel(1);
  console.log(`training on ${train.count} samples of ${split.name} (${backend.name} backend), evaluating on ${split.test.count} held-out`);
  const result = await trainLocal(model, train, {
    epochs: num(values, 'epochs', 3),
    batchSize: num(values, 'batch-size', 32),
    learningRate: num(values, 'learning-rate', 0.001),
    optimizer: values.optimizer === 'sgd' ? 'sgd' : 'adam',
    onEpoch: (epoch, loss, accuracy) => {
      const test = evaluate(model, split.test.images, split.test.labels);
      console.log(`epoch ${epoch}: train loss ${loss.toFixed(4)} acc ${(accuracy * 100).toFixed(2)}% | held-out loss ${test.loss.toFixed(4)} acc ${(test.accuracy * 100).toFixed(2)}%`);
    },
  });
  const final = evaluate(model, split.test.images, split.test.labels);
  console.log(`done in ${(result.durationMs / 1000).toFixed(1)} s (${Math.round(result.samplesPerSecond)} samples/s); held-out accuracy ${(final.accuracy * 100).toFixed(2)}%`);
  return 0;
}
