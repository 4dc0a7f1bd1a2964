// Asynchronous runs (strategy fedbuff): aggregations, staleness and discarded updates, from
// GET /runs/:id's `async` summary. The panel adds its own paragraph and histogram under the
// run header, so the page's HTML stays as it is; other runs hide it.
import { $, h, num, s } from './dom.js';
import { registerPanel } from './state.js';

function box() {
  let el = $('#async-summary');
  if (!el) {
    el = h('div', { id: 'async-summary', class: 'muted' });
    $('#run-info').after(el);
  }
  return el;
}

/** One bar per staleness value: how many updates arrived that many aggregations behind. */
function histogram(hist) {
  const keys = Object.keys(hist).map(Number).sort((a, b) => a - b);
  const max = Math.max(1, ...keys.map((k) => hist[k]));
  const W = 24;
  const svg = s('svg', { viewBox: `0 0 ${Math.max(1, keys.length) * W} 60`, width: Math.max(1, keys.length) * W, height: 60, role: 'img', 'aria-label': 'Updates by staleness' });
  keys.forEach((k, i) => {
    const height = Math.round((hist[k] / max) * 40);
    const bar = s('rect', { x: i * W + 3, y: 44 - height, width: W - 6, height, fill: '#0d9488' });
    bar.append(s('title', {}, `staleness ${k}: ${hist[k]} update(s)`));
    svg.append(bar, s('text', { x: i * W + W / 2, y: 57, 'text-anchor': 'middle', 'font-size': 10 }, k));
  });
  return svg;
}

registerPanel({
  name: 'async',
  renderRun(run) {
    const a = run.async;
    const el = box();
    el.hidden = !a;
    if (!a) return;
    const c = run.config ?? {};
    const by = a.byStatus ?? {};
    el.replaceChildren(
      h(
        'p',
        {},
        `Asynchronous: ${a.aggregations} aggregation(s) of ${c.bufferSize} updates · ${a.invocations} invocations · mean staleness ${num(a.meanStaleness, 2)}`,
        ` · discarded as stale ${a.discardedStale} (max ${c.maxStaleness}) · rejected ${by.rejected ?? 0} · failed ${by.failed ?? 0} · training now ${by.training ?? 0}`,
      ),
      histogram(a.stalenessHistogram ?? {}),
    );
  },
});
