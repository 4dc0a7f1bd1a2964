// The selected run's chart: global accuracy and loss per round, each node's local accuracy.
import { $, h, s, num, pct, nodeColor, withTitle } from './dom.js';

export function renderChart(run) {
  const svg = $('#chart');
  // The viewBox follows the rendered width, so labels keep their size on a phone.
  const W = Math.round(Math.max(320, Math.min(1000, svg.clientWidth || 640)));
  const H = Math.round(Math.max(220, Math.min(330, W * 0.4)));
  const L = 44, R = 48, T = 26, B = 32;
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  const done = run.rounds.filter((r) => r.status === 'completed' && r.globalAccuracy !== null && r.globalAccuracy !== undefined).sort((a, b) => a.round - b.round);
  svg.replaceChildren();
  svg.dataset.rounds = String(done.length);
  const maxRound = Math.max(run.config?.rounds ?? 1, ...done.map((r) => r.round), 1);
  const lastDone = done.length ? done[done.length - 1].round : 0;
  // leave room for the round in progress
  const lastRound = Math.max(2, lastDone + (run.status === 'running' && lastDone < maxRound ? 1 : 0));
  const x = (round) => L + ((round - 1) / Math.max(1, lastRound - 1)) * (W - L - R);
  const yAcc = (a) => T + (1 - a) * (H - T - B);
  const maxLoss = niceCeil(Math.max(0.1, ...done.map((r) => r.globalLoss ?? 0)));
  const yLoss = (l) => T + (1 - l / maxLoss) * (H - T - B);

  // grid and axes
  for (let i = 0; i <= 4; i++) {
    const y = T + (i / 4) * (H - T - B);
    svg.append(s('line', { x1: L, x2: W - R, y1: y, y2: y, class: 'axis', 'stroke-dasharray': i === 4 ? null : '2 4' }));
    svg.append(s('text', { x: L - 6, y: y + 4, 'text-anchor': 'end' }, `${100 - i * 25}%`));
    svg.append(s('text', { x: W - R + 6, y: y + 4 }, fmtLoss(maxLoss * (1 - i / 4))));
  }
  const step = Math.max(1, Math.ceil(lastRound / 10));
  for (let r = 1; r <= lastRound; r += step) svg.append(s('text', { x: x(r), y: H - B + 16, 'text-anchor': 'middle' }, r));
  svg.append(s('text', { x: (L + W - R) / 2, y: H - 2, 'text-anchor': 'middle' }, 'round'));
  svg.append(s('text', { x: 4, y: 11 }, 'accuracy'));
  svg.append(s('text', { x: W - 4, y: 11, 'text-anchor': 'end' }, 'loss'));

  if (!done.length) {
    svg.append(s('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' }, run.status === 'running' ? 'waiting for the first round …' : 'no completed rounds'));
    renderLegend([]);
    return;
  }

  // one line per edge node: local training accuracy reported with its update
  const nodeIds = [...new Set(done.flatMap((r) => (r.nodes ?? []).map((n) => n.nodeId)))].sort();
  for (const id of nodeIds) {
    const pts = done.flatMap((r) => {
      const n = (r.nodes ?? []).find((m) => m.nodeId === id && m.status === 'ok' && typeof m.accuracy === 'number');
      return n ? [[x(r.round), yAcc(n.accuracy), r.round, n.accuracy]] : [];
    });
    const color = nodeColor(id);
    svg.append(s('polyline', { points: pts.map((p) => `${p[0]},${p[1]}`).join(' '), fill: 'none', stroke: color, 'stroke-width': 1.5, opacity: 0.75, class: 'node-line', 'data-node': id }));
    for (const p of pts) svg.append(withTitle(s('circle', { cx: p[0], cy: p[1], r: 2.5, fill: color, class: 'pt-node', 'data-node': id, 'data-round': p[2] }), `${id}, round ${p[2]}: local accuracy ${pct(p[3])}`));
  }
  // global loss (dashed) and global accuracy (bold) on top
  const lossPts = done.filter((r) => typeof r.globalLoss === 'number').map((r) => [x(r.round), yLoss(r.globalLoss), r]);
  svg.append(s('polyline', { points: lossPts.map((p) => `${p[0]},${p[1]}`).join(' '), fill: 'none', stroke: 'currentColor', 'stroke-width': 2, 'stroke-dasharray': '6 4', class: 'loss-line' }));
  for (const p of lossPts) svg.append(withTitle(s('circle', { cx: p[0], cy: p[1], r: 3, fill: 'currentColor', class: 'pt-loss', 'data-round': p[2].round }), `round ${p[2].round}: loss ${num(p[2].globalLoss, 4)}`));
  const accPts = done.map((r) => [x(r.round), yAcc(r.globalAccuracy), r]);
  svg.append(s('polyline', { points: accPts.map((p) => `${p[0]},${p[1]}`).join(' '), fill: 'none', stroke: '#2563eb', 'stroke-width': 3, class: 'acc-line' }));
  for (const p of accPts) svg.append(withTitle(s('circle', { cx: p[0], cy: p[1], r: 4.5, fill: '#2563eb', class: 'pt-acc', 'data-round': p[2].round }), `round ${p[2].round}: global accuracy ${pct(p[2].globalAccuracy)} (v${p[2].modelVersion})`));
  renderLegend(nodeIds);
}

function renderLegend(nodeIds) {
  const item = (color, label, dashed) => {
    const sw = h('span', { class: dashed ? 'sw dashed' : 'sw' });
    if (dashed) sw.style.color = color;
    else sw.style.background = color;
    return h('span', {}, sw, label);
  };
  $('#chart-legend').replaceChildren(
    item('#2563eb', 'global accuracy (validation)'),
    item('currentColor', 'global loss', true),
    ...nodeIds.map((id) => item(nodeColor(id), `${id} local accuracy`)),
  );
}

function niceCeil(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}
const fmtLoss = (v) => (v >= 10 ? v.toFixed(0) : v >= 1 ? v.toFixed(1) : v.toFixed(2));
