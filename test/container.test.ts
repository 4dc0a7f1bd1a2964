import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { containerEnv, loadManifestObjects, parseQuantity, roleContainer, securityFlags } from '../services/harness/knative-roles.js';
import { baseImageAvailable } from '../services/harness/base-image.js';
import { podmanAvailable } from '../services/harness/podman.js';
import { ENV, ROLES } from '../services/shared/config.js';
import { MALLOC_ENV } from '../services/shared/memory.js';

const root = path.resolve(import.meta.dirname, '..');
const objects = loadManifestObjects(path.join(root, 'knative/base'));

describe('reading the Knative manifests for the container check', () => {
  it('parses Kubernetes quantities', () => {
    expect(parseQuantity('256Mi')).toBe(256 * 2 ** 20);
    expect(parseQuantity('1Gi')).toBe(2 ** 30);
    expect(parseQuantity('500M')).toBe(5e8);
    expect(parseQuantity('250m')).toBe(0.25);
    expect(parseQuantity('1')).toBe(1);
    expect(parseQuantity(undefined)).toBeUndefined();
    expect(() => parseQuantity('12 apples')).toThrow(/quantity/);
  });

  it('finds every role with its arguments, probes, user and resources', () => {
    for (const role of ROLES) {
      const c = roleContainer(objects, role);
      expect(c.args[0]).toBe(role === 'serving' ? 'serve' : role);
      expect(c.liveness).toMatch(/^\//);
      expect(c.readiness).toMatch(/^\//);
      expect(c.runAsUser).toBe(1000);
      expect(c.runAsNonRoot).toBe(true);
      expect(c.limits.memoryBytes).toBeGreaterThanOrEqual(c.requests.memoryBytes!);
      expect(c.secretRefs.map((r) => r.env)).toContain(ENV.databaseUrl);
    }
    expect(roleContainer(objects, 'serving').liveness).toBe('/v2/health/live');
    // The aggregator's namespace comes from the downward API.
    expect(roleContainer(objects, 'aggregator').env[ENV.namespace]).toBe('edgefl');
  });

  it('fills Secret keys from the source, leaves unset optional keys out and applies overrides last', () => {
    const serving = roleContainer(objects, 'serving');
    const env = containerEnv(serving, (ref) => (ref.optional ? undefined : `value-of-${ref.key}`), { PORT: '9999' });
    expect(env[ENV.databaseUrl]).toBe('value-of-url');
    expect(env).not.toHaveProperty(ENV.apiKeys);
    expect(env.PORT).toBe('9999');
    expect(() => containerEnv(serving, () => undefined)).toThrow(/required Secret key/);
  });

  it('turns the security context and limits into podman flags as the kubelet would apply them', () => {
    const trainer = roleContainer(objects, 'trainer');
    const flags = securityFlags({ ...trainer, readOnlyRootFilesystem: true, scratchMounts: ['/tmp'] }).join(' ');
    expect(flags).toContain('--user 1000:1000');
    expect(flags).toContain('--cap-drop all');
    expect(flags).toContain('--security-opt no-new-privileges');
    // A read-only root gets no implicit writable /tmp: only the declared emptyDir.
    expect(flags).toContain('--read-only --read-only-tmpfs=false');
    expect(flags).toContain('--tmpfs /tmp:rw,mode=1777');
    expect(flags).toContain(`--memory ${trainer.limits.memoryBytes}`);
    expect(securityFlags({ ...trainer, readOnlyRootFilesystem: false, scratchMounts: [] }).join(' ')).not.toContain('--read-only');
  });

  it('keeps local data and secrets out of the image build context', () => {
    const ignored = readFileSync(path.join(root, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim());
    for (const pattern of ['.edgefl', '.edgefl-*', 'node_modules', '.git']) expect(ignored).toContain(pattern);
  });

  it('builds the default image without embedded PostgreSQL or tfjs-node, and fails loudly', () => {
    const dockerfile = readFileSync(path.join(root, 'Dockerfile'), 'utf8');
    expect(dockerfile).toMatch(/ARG WITH_TFJS_NODE=0/);
    expect(dockerfile).toMatch(/--omit=optional/);
    expect(dockerfile).not.toMatch(/\|\|\s*echo/);
    expect(dockerfile).toMatch(/ARG NODE_IMAGE=node:(2[4-9]|[3-9]\d)\.\d+\.\d+-/);
  });

  it("sets the runtime stage's malloc arena limit to the value edgefl starts its own processes with", () => {
    const runtime = readFileSync(path.join(root, 'Dockerfile'), 'utf8').split(/^FROM .* AS runtime$/m)[1] ?? '';
    const env = /^ENV ((?:.*\\\n)*.*)$/m.exec(runtime)?.[1] ?? '';
    expect(env).toContain(`MALLOC_ARENA_MAX=${MALLOC_ENV.MALLOC_ARENA_MAX}`);
  });
});

// The real thing: build the image and run every role in a container. Minutes, so only where
// podman works (CI installs it); elsewhere the skip says why.
const podman = await podmanAvailable();
const base = podman.ok ? await baseImageAvailable() : podman;
const isRoot = process.getuid?.() === 0;
const skipReason = !podman.ok ? `podman unavailable: ${podman.reason}` : !base.ok ? base.reason : !isRoot ? 'the container check needs rootful podman (run as root)' : '';

describe.skipIf(Boolean(skipReason))(`container image${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  it('builds from the Dockerfile and runs trainer, serving and aggregator as the manifests start them', { timeout: 15 * 60_000 }, async () => {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [path.join(root, 'dist/bench/container-check.js'), '--json'], {
      cwd: root,
      maxBuffer: 64 * 1024 * 1024,
      timeout: 15 * 60_000,
    }).catch((e: { stdout?: string; stderr?: string }) => ({ stdout: e.stdout ?? '', stderr: e.stderr ?? String(e) }));
    const last = stdout.trim().split('\n').pop() ?? '';
    expect(last, stderr.slice(-3000)).toMatch(/^\{"image_mib":\d+,"roles":/);
    const result = JSON.parse(last);
    const failed = Object.fromEntries(Object.entries(result.details as Record<string, { status: string; checks: object }>).filter(([, d]) => d.status !== 'ok').map(([r, d]) => [r, d.checks]));
    expect(failed).toEqual({});
    expect(result.roles).toEqual({ trainer: 'ok', serving: 'ok', aggregator: 'ok' });
    for (const role of ROLES) expect(result.details[role].memory.peak_rss_mib).toBeGreaterThan(0);
  });
});
