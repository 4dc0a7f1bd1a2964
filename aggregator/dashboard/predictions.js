// Event-driven predictions (images arriving in an inbox or as CloudEvents): per edge node,
// results, error records and latency over the last hour, and the newest records.
import { $, h, secs, time, getJSON } from './dom.js';
import { registerPanel, schedule } from './state.js';

async function loadPredictions() {
  render(await getJSON('/predictions/recent?minutes=60&limit=15'));
}

function render({ nodes, recent }) {
  $('#predictions-empty').hidden = nodes.length > 0;
  $('#predictions-nodes').hidden = nodes.length === 0;
  $('#predictions-recent').hidden = recent.length === 0;
  $('#predictions-nodes tbody').replaceChildren(
    ...nodes.map((n) =>
      h(
        'tr',
        { 'data-node': n.nodeId },
        h('td', { class: 'mono' }, n.nodeId),
        h('td', { class: 'num' }, String(n.results)),
        h('td', { class: 'num' }, n.errors ? h('span', { class: 'badge failed' }, String(n.errors)) : '0'),
        h('td', { class: 'num' }, secs(n.meanLatencyMs)),
        h('td', { class: 'num' }, secs(n.p95LatencyMs)),
        h('td', {}, time(n.lastAt)),
      ),
    ),
  );
  $('#predictions-recent tbody').replaceChildren(
    ...recent.map((r) =>
      h(
        'tr',
        {},
        h('td', {}, time(r.at)),
        h('td', { class: 'mono' }, r.node),
        h('td', { class: 'mono', title: r.requestId }, r.source ?? '–'),
        r.error ? h('td', { title: r.error.message }, h('span', { class: 'badge failed' }, r.error.code)) : h('td', { class: 'num' }, String(r.class)),
        h('td', { class: 'num' }, r.modelVersion === null ? '–' : `v${r.modelVersion}`),
        h('td', { class: 'num' }, secs(r.latencyMs)),
      ),
    ),
  );
}

registerPanel({ name: 'predictions', load: loadPredictions });
// Predictions are not federation events: the card is polled while the page is visible.
setInterval(() => document.visibilityState === 'visible' && schedule(loadPredictions, 0), 3000);
