import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { HELP_FLAG, UsageError, flagHelp, int, parseFlags, text } from '../cli/flags.js';
import { nodeBox, type OutboxRecord } from './outbox.js';
import { watchInbox, type InboxWatcher } from './watch.js';

/** `edgefl up --inbox DIR`: spread into UP_FLAGS. */
export const INBOX_FLAGS = {
  inbox: text('classify images dropped in DIR/node-<i>/inbox; results in DIR/node-<i>/outbox', { arg: 'DIR' }),
};

const WATCH_FLAGS = {
  serving: text('serving functions, comma-separated; node-<i> is the i-th (default: those of the running edgefl up, from DATA_DIR/local.json)', { arg: 'URL,...' }),
  'data-dir': text('where edgefl up keeps local.json (default ./.edgefl)', { arg: 'DIR' }),
  'api-key': text('API key of the serving functions, when they require one', { arg: 'KEY', env: 'EDGEFL_API_KEY' }),
  concurrency: int('files in flight per node', { min: 1, max: 64, default: 4 }),
  ...HELP_FLAG,
};

export interface Inboxes {
  watchers: InboxWatcher[];
  stop(): Promise<void>;
}

/** One watcher per serving function: node-<i> watches DIR/node-<i>/inbox and sends to the i-th URL. */
export function startInboxes(dir: string, servingUrls: string[], say: (line: string) => void, opts: { apiKey?: string; concurrency?: number } = {}): Inboxes {
  const watchers = servingUrls.map((url, i) => {
    const box = nodeBox(dir, `node-${i}`);
    say(`edgefl: inbox ${box.inbox} → ${url}  (records in ${box.outbox})`);
    return watchInbox({ box, servingUrl: url, ...opts, onRecord: (name, r) => say(recordLine(box.node, name, r)), onError: (m) => say(`edgefl: inbox ${m}`) });
  });
  return { watchers, stop: async () => void (await Promise.all(watchers.map((w) => w.stop()))) };
}

/** One terminal line per input file. */
export function recordLine(node: string, name: string, r: OutboxRecord): string {
  if (r.error) return `  ${node}  ${name} → error ${r.error.code}: ${r.error.message}`;
  if (r.count !== undefined) return `  ${node}  ${name} → ${r.count} images: ${r.results} results, ${r.errors} errors (v${r.model_version})`;
  return `  ${node}  ${name} → ${r.class} (p ${Math.max(...(r.probabilities ?? [0])).toFixed(3)}, v${r.model_version}, ${r.latency_ms} ms)`;
}

/** `edgefl watch DIR`: the inboxes of a federation already running (edgefl up, or serving functions anywhere). */
export async function watchCommand(argv: string[]): Promise<number> {
  const v = parseFlags(WATCH_FLAGS, argv, { positionals: true });
  if (v.help) {
    console.log(`edgefl watch DIR — classify images dropped in DIR/node-<i>/inbox, OSCAR-style\n\n${flagHelp(WATCH_FLAGS)}`);
    return 0;
  }
  if (v._.length !== 1) throw new UsageError('usage: edgefl watch DIR [--serving URL,...]');
  const urls = v.serving ? v.serving.split(',').map((u) => u.trim().replace(/\/+$/, '')) : servingUrlsOfUp(v['data-dir'] ?? '.edgefl');
  for (const u of urls) if (!/^https?:\/\//.test(u) || !URL.canParse(u)) throw new UsageError(`--serving: '${u}' is not an http(s) URL`);
  const say = (line: string) => void process.stdout.write(line + '\n');
  const inboxes = startInboxes(v._[0]!, urls, say, { apiKey: v['api-key'] ?? process.env.EDGEFL_API_KEY, concurrency: v.concurrency });
  say('edgefl: watching; Ctrl-C stops');
  await new Promise<void>((resolve) => process.once('SIGINT', resolve).once('SIGTERM', resolve));
  await inboxes.stop();
  return 0;
}

function servingUrlsOfUp(dataDir: string): string[] {
  const file = path.join(dataDir, 'local.json');
  if (!existsSync(file)) throw new UsageError(`no --serving and no ${file}: start edgefl up first, or name the serving functions`);
  const urls = (JSON.parse(readFileSync(file, 'utf8')) as { servingUrls?: string[] }).servingUrls;
  if (!urls?.length) throw new UsageError(`${file} names no serving functions`);
  return urls;
}
