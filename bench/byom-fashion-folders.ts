/**
 * Writes Fashion-MNIST as per-node image folders (DIR/node-<i>/<class>/<index>.png, DIR/eval/…)
 * holding exactly what `edgefl up --dataset idx --partition iid --max-train-samples N` gives
 * each node, so the two federations can be compared on the same samples:
 *
 *   node dist/bench/byom-fashion-folders.js DIR [nodes=3] [perNode=2000]
 *   edgefl up --node-data DIR --partition none ...   vs   edgefl up --dataset idx --idx-dir … --partition iid --max-train-samples N ...
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PNG } from 'pngjs';
import { loadIdxDir } from '../datasets/idx.js';
import { nodeShard } from '../datasets/index.js';
import type { ImageSet } from '../datasets/types.js';

export const FASHION_IDX_DIR = '/usr/share/datasets/fashion-mnist';

function writeImages(set: ImageSet, indices: ArrayLike<number>, dir: string): void {
  const size = set.rows * set.cols;
  for (let k = 0; k < indices.length; k++) {
    const i = indices[k]!;
    const png = new PNG({ width: set.cols, height: set.rows });
    for (let p = 0; p < size; p++) {
      const v = Math.round(set.images[i * size + p]! * 255);
      png.data.set([v, v, v, 255], p * 4);
    }
    const classDir = path.join(dir, String(set.labels[i]));
    mkdirSync(classDir, { recursive: true });
    // Zero-padded so the loader's sorted order is the shard's order.
    writeFileSync(path.join(classDir, `${String(k).padStart(6, '0')}.png`), PNG.sync.write(png));
  }
}

const [out, nodesArg = '3', perNodeArg = '2000'] = process.argv.slice(2);
if (!out) throw new Error('usage: byom-fashion-folders DIR [nodes] [perNode]');
const nodes = Number(nodesArg);
const perNode = Number(perNodeArg);
const split = loadIdxDir(FASHION_IDX_DIR);
for (let n = 0; n < nodes; n++) {
  const { shard } = nodeShard(split.train, n, { kind: 'iid', nodes, seed: 42 });
  writeImages(split.train, shard.indices.subarray(0, perNode), path.join(out, `node-${n}`));
}
writeImages(split.test, Array.from({ length: split.test.count }, (_, i) => i), path.join(out, 'eval'));
console.log(`wrote ${nodes} node folders of ${perNode} images and eval/ (${split.test.count}) under ${out}`);
