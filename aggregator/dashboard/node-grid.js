// Node grid: every registered edge node as one cell coloured by its trainer's state (cold,
// starting, training, idle, failed), from GET /activator (edgefl up with trainers started on
// demand), plus cold starts over time. At 100 nodes it replaces the per-node cards.
import { $, h, s, getJSON } from './dom.js';
import { registerPanel } from './state.js';

const STATES = ['cold', 'starting', 'training', 'idle', 'failed'];
/** Above this many nodes the per-node cards give way to the grid. */
const CARDS_UP_TO = 16;
let timer;
/** Trainers always on (or an aggregator without `edgefl up`'s activator): the cards say it all. */
let alwaysOn = false;

async function loadGrid() {
  if (alwaysOn) return;
  const res = await fetch('/activator', { headers: { accept: 'application/json' } });
  const a = res.ok ? await res.json() : null;
  if (!a?.onDemand) {
    alwaysOn = true;
    return;
  }
  $('#node-grid-card').hidden = false;
  renderGrid(a);
  // States change between rounds (starts, idle reaps): poll while the page is visible.
  clearTimeout(timer);
  timer = setTimeout(() => document.visibilityState === 'visible' ? loadGrid().catch(console.error) : (timer = undefined), 2000);
}

function renderGrid(a) {
  const cards = $('#nodes')?.closest('section');
  if (cards) cards.hidden = a.nodes.length > CARDS_UP_TO;
  $('#node-grid-summary').textContent =
    `${a.nodes.length} nodes, ${a.active} trainer process(es) running (at most ${a.maxActive}, peak ${a.peakActive}), ${a.queued} waiting; ` +
    `${a.coldStarts} cold start(s) for ${a.invocations} invocation(s); idle trainers stop after ${a.idleMs / 1000} s.`;
  $('#node-grid-legend').replaceChildren(...STATES.map((st) => h('span', {}, h('span', { class: `cell ${st}` }), `${st} ${a.counts[st]}`)), h('span', {}, h('span', { class: 'cell plain slow' }), 'slow device'), h('span', {}, h('span', { class: 'cell plain flaky' }), 'flaky device'));
  $('#node-grid').replaceChildren(
    ...a.nodes.map((n) => {
      const device = [n.slowdown > 1 ? `${n.slowdown}x slower` : '', n.failProbability > 0 ? `fails ${Math.round(n.failProbability * 100)}% of updates` : ''].filter(Boolean).join(', ');
      const tip = `${n.node}: ${n.state}; ${n.coldStarts} cold start(s), ${n.invocations} invocation(s), ${n.failures} failure(s)${device ? `; ${device}` : ''}`;
      return h('span', { class: `cell ${n.state}${n.slowdown > 1 ? ' slow' : ''}${n.failProbability > 0 ? ' flaky' : ''}`, title: tip, 'aria-label': tip });
    }),
  );
  renderColdStarts(a.recentColdStarts);
}

/** Cold starts per 10 s over the recent record, as bars (failed starts on top, red). */
function renderColdStarts(events) {
  const svg = $('#cold-starts');
  if (!events.length) return svg.replaceChildren(s('text', { x: 8, y: 40 }, 'no cold starts yet'));
  const t0 = Date.parse(events[0].at);
  const bins = new Map();
  for (const e of events) {
    const i = Math.floor((Date.parse(e.at) - t0) / 10_000);
    const b = bins.get(i) ?? { ok: 0, failed: 0, ms: 0 };
    if (e.ok) (b.ok++, (b.ms += e.ms));
    else b.failed++;
    bins.set(i, b);
  }
  const n = Math.max(...bins.keys()) + 1;
  const top = Math.max(...[...bins.values()].map((b) => b.ok + b.failed));
  const w = 600 / Math.max(n, 1);
  const bars = [];
  for (const [i, b] of bins) {
    const hOk = (b.ok / top) * 56;
    const hBad = (b.failed / top) * 56;
    const tip = `${b.ok + b.failed} cold start(s) ${i * 10}–${i * 10 + 10} s after the first${b.ok ? `, mean ${Math.round(b.ms / b.ok)} ms to ready` : ''}${b.failed ? `, ${b.failed} failed` : ''}`;
    bars.push(s('rect', { x: 30 + i * w, y: 62 - hOk, width: Math.max(1, w - 1), height: hOk, class: 'ok' }, undefined), s('rect', { x: 30 + i * w, y: 62 - hOk - hBad, width: Math.max(1, w - 1), height: hBad, class: 'bad' }));
    bars.at(-2).append(s('title', {}, tip));
  }
  svg.replaceChildren(s('text', { x: 0, y: 10 }, String(top)), s('text', { x: 0, y: 62 }, '0'), s('text', { x: 30, y: 76 }, 'cold starts per 10 s, oldest recorded on the left'), ...bars);
}

registerPanel({ name: 'node-grid', load: loadGrid, events: ['round-start', 'round', 'run'] });
