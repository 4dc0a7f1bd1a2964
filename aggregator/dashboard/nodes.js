// Edge node cards (shard, last training, what each serves) and the promotion card.
import { $, h, s, num, pct, secs, time, withTitle } from './dom.js';
import { state } from './state.js';

/** Latest training result of a node in the selected run (newest round first). */
function lastTraining(nodeId) {
  const rounds = [...(state.run?.rounds ?? [])].sort((a, b) => b.round - a.round);
  for (const r of rounds) {
    const n = (r.nodes ?? []).find((m) => m.nodeId === nodeId);
    if (n) return { ...n, round: r.round };
  }
  return undefined;
}

export function renderNodes() {
  const box = $('#nodes');
  box.replaceChildren(
    ...state.nodes.map((n) => {
      const t = lastTraining(n.id);
      return h(
        'article',
        { class: 'node', 'data-node': n.id },
        h('h4', {}, h('span', { class: 'mono' }, n.id), t ? h('span', { class: `badge ${t.status === 'ok' ? 'completed' : 'failed'}`, title: t.reason ?? '' }, t.status) : null),
        histogram(n.labelHistogram),
        h(
          'dl',
          {},
          h('dt', {}, 'Shard'),
          h('dd', {}, n.shardSize !== undefined ? `${n.shardSize} samples` : 'not reported yet'),
          h('dt', {}, 'Last training'),
          h('dd', {}, t && t.status === 'ok' ? `round ${t.round}: ${secs(t.durationMs)}, ${t.samples} samples` : t ? `round ${t.round}: ${t.status}` : '–'),
          h('dt', {}, 'Throughput'),
          h('dd', {}, t?.samplesPerSecond ? `${Math.round(t.samplesPerSecond)} samples/s` : '–'),
          h('dt', {}, 'Local acc.'),
          h('dd', {}, t?.accuracy !== undefined ? `${pct(t.accuracy)} (loss ${num(t.loss)})` : '–'),
          h('dt', {}, 'Serves'),
          h('dd', { class: 'serves' }, servesText(n.id)),
          h('dt', {}, 'Promoted'),
          h('dd', { class: 'promoted-for' }, promotedText(n.id)),
          h('dt', {}, 'Serving'),
          h('dd', { class: 'mono' }, n.servingUrl ?? '–'),
          h('dt', {}, 'Last seen'),
          h('dd', {}, time(n.lastSeen)),
        ),
      );
    }),
  );
  $('#nodes-empty').hidden = state.nodes.length > 0;
}

function histogram(hist) {
  const svg = s('svg', { class: 'hist', viewBox: '0 0 200 70', role: 'img', 'aria-label': 'label histogram' });
  if (!Array.isArray(hist) || !hist.length) {
    svg.append(s('text', { x: 100, y: 38, 'text-anchor': 'middle' }, 'no label histogram yet'));
    return svg;
  }
  const max = Math.max(1, ...hist);
  const bw = 200 / hist.length;
  hist.forEach((v, i) => {
    const bh = (v / max) * 52;
    svg.append(withTitle(s('rect', { x: i * bw + 2, y: 56 - bh, width: bw - 4, height: Math.max(bh, 0.5), rx: 1.5 }), `digit ${i}: ${v}`));
    svg.append(s('text', { x: i * bw + bw / 2, y: 68, 'text-anchor': 'middle' }, i));
  });
  return svg;
}

// ---- promotion -------------------------------------------------------------

const planOf = (nodeId) => state.promoted?.nodes?.find((n) => n.nodeId === nodeId);
const heldOut = (f) => pct(f?.validationAccuracy ?? f?.accuracy);

/** What the node's serving function last reported it runs (it reports on every load), with that version's held-out accuracy. */
function servesText(nodeId) {
  const s = planOf(nodeId)?.served;
  if (!s) return 'not reported yet';
  if (s.version === null) return 'nothing (not ready)';
  return [`v${s.version} `, s.canary ? h('span', { class: 'badge canary' }, 'canary') : null, ` held-out ${heldOut(s.figures)}`];
}

function promotedText(nodeId) {
  const p = planOf(nodeId);
  if (!p || p.version === null) return 'nothing promoted';
  return p.canary ? [`v${p.version} `, h('span', { class: 'badge canary' }, 'canary')] : `v${p.version} (fleet)`;
}

const describe = (p) => `v${p.version} ${p.nodes ? `canary on ${p.nodes.join(', ')}` : 'fleet'} · ${p.by} · ${time(p.at)} · ${p.reason}`;

export function renderPromotion() {
  const p = state.promoted;
  const fleet = p?.fleet;
  $('#promoted-fleet').textContent = fleet ? `v${fleet.version}, held-out ${heldOut(fleet.figures)} — ${fleet.reason} (${fleet.by}, ${time(fleet.at)})` : 'nothing promoted yet: serving functions are not ready';
  $('#promotion-history').replaceChildren(...(p?.history ?? []).slice(0, 10).map((x) => h('li', { 'data-promotion': x.id }, describe(x))));
}
