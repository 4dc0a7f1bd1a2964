import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

export interface TorchPeerResult {
  peer: string;
  threads: number;
  params: number;
  train_samples_per_s: number;
  infer_samples_per_s: number;
  single_infer_ms: number;
}

/** Where the shared PyTorch reference lives: EDGEFL_TORCH_PEER, else ../shared/reference next to the checkout. */
export function torchPeerScript(): string | undefined {
  const candidates = [process.env.EDGEFL_TORCH_PEER, path.resolve(process.cwd(), '../shared/reference/torch_cnn_peer.py')].filter(Boolean) as string[];
  return candidates.find((p) => existsSync(p));
}

/**
 * Runs the same CNN in Debian's PyTorch (python3-torch) on one thread, in the same run as our
 * measurement, so the ratio means something on a machine whose absolute speed drifts.
 * Resolves undefined where the script or torch is missing.
 */
export function runTorchPeer(samples = 4096, threads = 1, python = '/usr/bin/python3'): Promise<TorchPeerResult | undefined> {
  const script = torchPeerScript();
  if (!script || !existsSync(python)) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    execFile(python, [script, String(threads), String(samples)], { timeout: 300_000 }, (err, stdout) => {
      if (err) return resolve(undefined);
      try {
        const last = stdout.trim().split('\n').pop()!;
        resolve(JSON.parse(last) as TorchPeerResult);
      } catch {
        resolve(undefined);
      }
    });
  });
}
