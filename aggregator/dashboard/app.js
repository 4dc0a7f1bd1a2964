// edgefl dashboard: plain DOM + SVG, no dependencies. Data comes from the aggregator's
// JSON routes; GET /events (server-sent events) tells the page when to refresh.
// The page's CSP forbids inline styles and scripts, so everything is built with the DOM API.

import { $, h, num, pct, secs, time, bytes, getJSON } from './dom.js';
import { panels, schedule, showLoadError, state } from './state.js';
import { renderChart } from './chart.js';
import { renderNodes, renderPromotion } from './nodes.js';
import { initTry, renderServingOptions } from './try-it.js';
// Feature panels register themselves (see state.js registerPanel); one import each.
import './predictions.js';
import './async-panel.js';
import './node-grid.js';
import './privacy.js';

// ---- loading ---------------------------------------------------------------

async function loadRuns() {
  const { runs } = await getJSON('/runs');
  state.runs = runs;
  if (!state.pinned || !runs.some((r) => r.id === state.runId)) {
    const next = runs[0]?.id ?? null;
    if (next !== state.runId) state.runId = next;
  }
  renderRuns();
  await loadRun();
}

async function loadRun() {
  if (!state.runId) {
    state.run = null;
    renderRun();
    return;
  }
  const id = state.runId;
  const run = await getJSON(`/runs/${encodeURIComponent(id)}`);
  if (id !== state.runId) return; // selection changed meanwhile
  state.run = run;
  renderRun();
  renderNodes();
}

async function loadNodes() {
  state.nodes = (await getJSON('/nodes')).nodes;
  renderNodes();
  renderServingOptions();
}

async function loadModels() {
  state.models = (await getJSON('/models')).models;
  renderModels();
}

async function loadPromoted() {
  state.promoted = await getJSON('/models/promoted');
  renderPromotion();
  renderNodes();
}

// ---- runs ------------------------------------------------------------------

function renderRuns() {
  const body = $('#runs-table tbody');
  body.replaceChildren(
    ...state.runs.map((r) =>
      h(
        'tr',
        { class: r.id === state.runId ? 'selected' : '', 'data-run': r.id, onclick: () => (location.hash = `#/run/${encodeURIComponent(r.id)}`) },
        h('td', {}, h('a', { href: `#/run/${encodeURIComponent(r.id)}`, class: 'mono' }, r.id)),
        h('td', {}, h('span', { class: `badge ${r.status}` }, r.status)),
        h('td', { class: 'num' }, r.currentRound),
        h('td', { class: 'num' }, pct(r.bestAccuracy)),
        h('td', { class: 'num' }, r.latestVersion ? `v${r.latestVersion}` : '–'),
        h('td', {}, time(r.createdAt)),
      ),
    ),
  );
  $('#runs-empty').hidden = state.runs.length > 0;
}

function renderRun() {
  const run = state.run;
  $('#run-detail').hidden = !run;
  if (!run) return;
  $('#run-id').textContent = run.id;
  const badge = $('#run-status');
  badge.textContent = run.status;
  badge.className = `badge ${run.status}`;
  const c = run.config ?? {};
  $('#run-info').textContent = [
    `${c.strategy ?? 'fedavg'}, up to ${c.rounds} rounds, ${c.epochs} local epoch(s), target ${pct(c.targetAccuracy, 1)}`,
    `best ${pct(run.bestAccuracy)}`,
    run.latestVersion ? `latest model v${run.latestVersion}` : null,
    run.stopReason,
  ]
    .filter(Boolean)
    .join(' · ');
  // The header reads the same rows as the round table, so the two always agree.
  const prog = $('#run-progress');
  const p = run.status === 'running' ? run.rounds.find((r) => r.status === 'running') : undefined;
  prog.hidden = !p;
  if (p) prog.textContent = `Round ${p.round} in progress: training on ${p.selected.join(', ')} from model v${p.baseVersion} …`;
  renderChart(run);
  renderRounds(run);
  for (const p of panels) p.renderRun?.(run);
}

function renderRounds(run) {
  const rows = [...run.rounds].sort((a, b) => b.round - a.round);
  $('#rounds-table tbody').replaceChildren(
    ...rows.map((r) =>
      h(
        'tr',
        { 'data-round': r.round },
        h('td', { class: 'num' }, r.round, r.attempt > 1 ? h('span', { class: 'muted', title: 'attempt' }, ` (#${r.attempt})`) : null),
        h('td', {}, h('span', { class: `badge ${r.status}`, title: r.reason ?? '' }, r.status)),
        h('td', { class: 'num' }, pct(r.globalAccuracy)),
        h('td', { class: 'num' }, pct(r.testAccuracy)),
        h('td', { class: 'num' }, num(r.globalLoss)),
        h('td', {}, r.participants ? `${r.participants.length}/${r.selected.length}` : `–/${r.selected.length}`, r.participants?.length ? h('span', { class: 'muted' }, ` ${r.participants.join(', ')}`) : null),
        h('td', {}, r.stragglers?.length ? r.stragglers.join(', ') : '–'),
        h('td', { class: 'num' }, secs(r.durationMs)),
        h('td', { class: 'num' }, secs(r.trainingMs)),
        h('td', { class: 'num' }, secs(r.aggregationMs)),
        h('td', { class: 'num' }, secs(r.evaluationMs)),
        h(
          'td',
          { class: 'num' },
          r.modelVersion ? h('a', { href: `/models/${r.modelVersion}` }, `v${r.modelVersion}`) : '–',
          r.promoted ? [' ', h('span', { class: 'badge promoted', title: r.promotionReason ?? '' }, 'promoted')] : null,
        ),
      ),
    ),
  );
}

// ---- models ----------------------------------------------------------------

function renderModels() {
  $('#models-table tbody').replaceChildren(
    ...state.models.slice(0, 50).map((m) =>
      h(
        'tr',
        { 'data-version': m.version },
        h('td', { class: 'num' }, h('a', { href: `/models/${m.version}` }, `v${m.version}`)),
        h('td', {}, h('span', { class: `badge ${m.status}` }, m.status)),
        h('td', { class: 'mono' }, m.runId ? `${m.runId.slice(-6)} / ${m.round ?? '–'}` : '–'),
        h('td', { class: 'num' }, pct(m.metrics?.accuracy)),
        h('td', { class: 'num' }, num(m.metrics?.loss)),
        h('td', { class: 'num' }, m.metrics?.initial ? 'initial' : (m.metrics?.participants ?? '–')),
        h('td', { class: 'num' }, bytes(m.sizeBytes)),
        h('td', {}, time(m.createdAt)),
        h('td', {}, h('a', { href: `/models/${m.version}?format=bin`, download: `edgefl-mnist-v${m.version}.eflw` }, 'download')),
      ),
    ),
  );
}

// ---- live updates ----------------------------------------------------------

function connectEvents() {
  const live = $('#live');
  const es = new EventSource('/events');
  let wasDown = false;
  es.onopen = () => {
    live.classList.add('on');
    live.title = 'live updates: connected';
    if (wasDown) refreshAll(); // events may have been missed while disconnected
    wasDown = false;
  };
  es.onerror = () => {
    live.classList.remove('on');
    live.title = 'live updates: reconnecting';
    wasDown = true;
  };
  es.addEventListener('round-start', () => schedule(loadRuns));
  es.addEventListener('round', () => {
    schedule(loadRuns);
    schedule(loadModels);
    schedule(loadNodes, 600);
    schedule(loadPromoted, 600);
  });
  es.addEventListener('run', () => {
    schedule(loadRuns);
    schedule(loadModels);
  });
  for (const p of panels) for (const name of p.load ? (p.events ?? []) : []) es.addEventListener(name, () => schedule(p.load));
}

function refreshAll() {
  schedule(loadRuns, 0);
  schedule(loadNodes, 0);
  schedule(loadModels, 0);
  schedule(loadPromoted, 0);
  for (const p of panels) if (p.load) schedule(p.load, 0);
}

// ---- routing ---------------------------------------------------------------

function route() {
  const hash = location.hash || '#/';
  const tryView = hash.startsWith('#/try');
  $('#view-runs').hidden = tryView;
  $('#view-try').hidden = !tryView;
  for (const a of document.querySelectorAll('[data-nav]')) a.classList.toggle('active', a.dataset.nav === (tryView ? 'try' : 'runs'));
  if (!tryView && state.run) renderChart(state.run); // it may have been drawn while hidden
  const m = hash.match(/^#\/run\/(.+)$/);
  if (m) {
    const id = decodeURIComponent(m[1]);
    state.pinned = true;
    if (id !== state.runId) {
      state.runId = id;
      renderRuns();
      loadRun().catch(showLoadError);
    }
  } else if (!tryView && state.pinned) {
    state.pinned = false;
    schedule(loadRuns, 0);
  }
}

window.addEventListener('hashchange', route);
let resizeTimer;
window.addEventListener('resize', () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => state.run && !$('#run-detail').hidden && renderChart(state.run), 150);
});
initTry();
route();
connectEvents();
refreshAll();
// An admin's promotion or rollback is not a round event: what serves where is polled too.
setInterval(() => document.visibilityState === 'visible' && schedule(loadPromoted, 0), 3000);
