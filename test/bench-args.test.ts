import { describe, expect, it } from 'vitest';
import { BenchUsageError, defaultOutDir, parseBenchArgs } from '../bench/run.js';
import { serverlessCost } from '../bench/cost.js';
import { percentile, spread } from '../bench/lib/stats.js';

describe('bench dispatcher arguments', () => {
  it('fills in cold-warm defaults for the local target', async () => {
    const a = await parseBenchArgs('cold-warm', ['--json']);
    expect(a.json).toBe(true);
    expect(a.out).toBeUndefined();
    expect(a.params).toEqual({ target: 'local', cold: 10, duration_s: 5, connections: [1, 10, 50] });
  });

  it('accepts --target knative with --url and --service, defaulting the namespace', async () => {
    const a = await parseBenchArgs('cold-warm', ['--target', 'knative', '--url', 'http://serving-0.edgefl.example.com/', '--service', 'serving-0', '--cold', '2', '--out', 'x']);
    expect(a.out).toBe('x');
    expect(a.params).toEqual({
      target: 'knative',
      cold: 2,
      duration_s: 5,
      connections: [1, 10, 50],
      url: 'http://serving-0.edgefl.example.com',
      service: 'serving-0',
      namespace: 'edgefl',
      scale_timeout_s: 900,
    });
    const b = await parseBenchArgs('cold-warm', ['--target', 'knative', '--url', 'https://x.example', '--service', 's', '--namespace', 'prod', '--scale-timeout', '60', '--connections', '1,10']);
    expect(b.params).toMatchObject({ namespace: 'prod', scale_timeout_s: 60, connections: [1, 10] });
  });

  it('rejects incomplete or invalid knative arguments with a clear message', async () => {
    await expect(parseBenchArgs('cold-warm', ['--target', 'knative', '--service', 's'])).rejects.toThrow(/--url/);
    await expect(parseBenchArgs('cold-warm', ['--target', 'knative', '--url', 'http://x'])).rejects.toThrow(/--service/);
    await expect(parseBenchArgs('cold-warm', ['--target', 'knative', '--url', 'not a url', '--service', 's'])).rejects.toThrow(/absolute/);
    await expect(parseBenchArgs('cold-warm', ['--target', 'knative', '--url', 'ftp://x', '--service', 's'])).rejects.toThrow(/http/);
    await expect(parseBenchArgs('cold-warm', ['--target', 'knative', '--url', 'http://x', '--service', 'Bad_Name'])).rejects.toThrow(/Kubernetes name/);
    await expect(parseBenchArgs('cold-warm', ['--target', 'knative', '--url', 'http://x', '--service', 's', '--cold', '0'])).rejects.toThrow(/--cold/);
    await expect(parseBenchArgs('cold-warm', ['--target', 'lambda'])).rejects.toThrow(/local or knative/);
    await expect(parseBenchArgs('cold-warm', ['--url', 'http://x'])).rejects.toThrow(/only apply with --target knative/);
    await expect(parseBenchArgs('cold-warm', ['--duration', '0'])).rejects.toThrow(BenchUsageError);
    await expect(parseBenchArgs('cold-warm', ['--connections', '1,x'])).rejects.toThrow(/--connections/);
    await expect(parseBenchArgs('cold-warm', ['--bogus'])).rejects.toThrow(BenchUsageError);
    await expect(parseBenchArgs('nope', [])).rejects.toThrow(/unknown benchmark 'nope'/);
  });

  it('parses the other benchmarks with their defaults', async () => {
    expect((await parseBenchArgs('batch', [])).params).toEqual({ sizes: [1, 10, 100, 500, 1000, 5000, 10000], reps: 5, cold_runs: 1 });
    expect((await parseBenchArgs('cost', [])).params).toMatchObject({ images: 10000, batches: [1, 5, 10], memory_mb: [128, 256, 512, 1024], price_gb_s: 0.0000166667, price_request: 0.0000002, billing_step_ms: 100 });
    expect((await parseBenchArgs('fl', ['--rounds', '3', '--max-train-samples', '300'])).params).toMatchObject({ nodes: 3, rounds: 3, alpha: 0.5, target: 0.99, max_train_samples: 300 });
    expect((await parseBenchArgs('summary', [])).params).toMatchObject({ cold: 3, duration_s: 2, batch: 100 });
    expect(defaultOutDir('batch', new Date('2026-01-02T03:04:05.678Z'))).toMatch(/bench-results\/batch-2026-01-02T03-04-05Z$/);
  });

  it('parses chaos like any other benchmark: defaults, and a bad value is a usage error', async () => {
    expect((await parseBenchArgs('chaos', [])).params).toEqual({ iterations: 2, rounds: 3, samples: 150 });
    expect((await parseBenchArgs('chaos', ['--iterations', '5', '--rounds', '2', '--json'])).params).toMatchObject({ iterations: 5, rounds: 2 });
    await expect(parseBenchArgs('chaos', ['--iterations', 'x'])).rejects.toThrow(BenchUsageError);
    await expect(parseBenchArgs('chaos', ['--iterations', 'x'])).rejects.toThrow("--iterations must be an integer from 1 to 1000; got 'x'");
    await expect(parseBenchArgs('chaos', ['--rounds', '1'])).rejects.toThrow(/--rounds/);
  });
});

describe('bench helpers', () => {
  it('applies the serverless cost equation with billing-step rounding', () => {
    const c = serverlessCost({ requests: 10_000, memoryMb: 128, durationMs: 3, priceGbS: 0.0000166667, priceRequest: 0.0000002, billingStepMs: 100 });
    expect(c.billed_ms).toBe(100);
    expect(c.compute_usd).toBeCloseTo(10_000 * 0.125 * 0.1 * 0.0000166667, 12);
    expect(c.total_usd).toBeCloseTo(c.compute_usd + 0.002, 12);
    expect(serverlessCost({ requests: 1, memoryMb: 1024, durationMs: 100.01, priceGbS: 1, priceRequest: 0, billingStepMs: 100 }).billed_ms).toBe(200);
  });

  it('computes nearest-rank percentiles', () => {
    const v = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(v, 50)).toBe(50);
    expect(percentile(v, 90)).toBe(90);
    expect(percentile(v, 99)).toBe(99);
    expect(spread([3, 1, 2])).toMatchObject({ min: 1, median: 2, max: 3 });
  });
});
