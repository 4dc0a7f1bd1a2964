/** An image classification set held as one flat Float32Array of [0,1] pixels. */
export interface ImageSet {
  /** count * rows * cols pixel intensities in [0, 1]. */
  images: Float32Array;
  labels: Uint8Array;
  count: number;
  rows: number;
  cols: number;
  /** Values per pixel (3 for RGB); 1 when absent. */
  channels?: number;
  numClasses: number;
}

export interface TrainTestSplit {
  name: string;
  train: ImageSet;
  test: ImageSet;
}

export function subset(set: ImageSet, indices: ArrayLike<number>): ImageSet {
  const pixels = set.rows * set.cols * (set.channels ?? 1);
  const images = new Float32Array(indices.length * pixels);
  const labels = new Uint8Array(indices.length);
  for (let i = 0; i < indices.length; i++) {
    const src = indices[i]!;
    images.set(set.images.subarray(src * pixels, (src + 1) * pixels), i * pixels);
    labels[i] = set.labels[src]!;
  }
  return { ...set, images, labels, count: indices.length };
}

export function labelHistogram(labels: ArrayLike<number>, numClasses: number): number[] {
  const hist = new Array<number>(numClasses).fill(0);
  for (let i = 0; i < labels.length; i++) hist[labels[i]!]!++;
  return hist;
}
