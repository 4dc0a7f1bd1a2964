// The dashboard's shared state, its coalesced reloads and the registry that feature panels
// (privacy, node grid, event-driven predictions …) plug into without editing app.js's code.
import { $ } from './dom.js';

export const state = {
  runs: [],
  runId: null, // selected run
  pinned: false, // true when the user picked a run (otherwise the newest one is followed)
  run: null, // GET /runs/:id
  nodes: [],
  models: [],
  promoted: null, // GET /models/promoted: what is promoted, what each node serves, history
};


const timers = new Map();
/** Coalesces bursts of events into one reload per loader. */
export function schedule(fn, delay = 250) {
  if (timers.has(fn)) return;
  timers.set(
    fn,
    setTimeout(() => {
      timers.delete(fn);
      fn().catch(showLoadError);
    }, delay),
  );
}

export function showLoadError(e) {
  console.error(e);
  $('#live').title = `error: ${e.message}`;
}

/**
 * A feature panel: `load` fetches and renders its own data (called on start, on reconnect and
 * on the server-sent events named in `events`); `renderRun(run)` draws its part of the
 * selected run whenever that run is redrawn.
 * @type {{ name: string, load?: () => Promise<void>, events?: string[], renderRun?: (run: object) => void }[]}
 */
export const panels = [];
export function registerPanel(panel) {
  panels.push(panel);
}
