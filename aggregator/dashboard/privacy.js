// Privacy panel: what the selected run's differential privacy has spent, from GET /runs/:id's
// `privacy` (aggregator/privacy-budget.ts): each node's ε against its budget (record-level
// DP-SGD; a node's total over every run), or the run's client-level ε (DP-FedAvg) and, with
// adaptive clipping, the clip norm the next round will use.
import { $, h, num } from './dom.js';
import { registerPanel } from './state.js';

/** One labelled bar: spent / budget, full (and marked) when the budget is reached. */
function budgetBar(label, spent, budget) {
  const share = budget > 0 ? Math.min(1, spent / budget) : 1;
  const fill = h('span', { class: share >= 1 ? 'spent' : undefined });
  fill.style.width = `${(share * 100).toFixed(1)}%`;
  return h(
    'li',
    { title: `${label}: ε = ${num(spent, 4)} of ${budget}` },
    h('span', { class: 'who mono' }, label),
    h('span', { class: 'bar' }, fill),
    h('span', { class: 'eps' }, `ε ${num(spent, 2)} / ${budget}`),
  );
}

function renderPrivacy(run) {
  const p = run.privacy;
  const card = $('#privacy');
  card.hidden = !p;
  if (!p) return;
  const list = $('#privacy-bars');
  if (p.mode === 'central') {
    const clip = p.clip !== undefined ? ` · adaptive clip C = ${num(p.clip, 3)}` : ` · clip C = ${run.config?.dp?.clip ?? '–'}`;
    $('#privacy-summary').textContent = `client-level DP-FedAvg: the run's ε over its completed rounds, δ = ${p.delta}${clip}`;
    list.replaceChildren(budgetBar('run', p.clientEpsilon ?? 0, p.epsilonBudget));
    return;
  }
  const nodes = Object.entries(p.nodeEpsilon ?? {}).sort(([a], [b]) => a.localeCompare(b, undefined, { numeric: true }));
  $('#privacy-summary').textContent = `record-level DP-SGD on every node: each node's ε over all its DP rounds (every run), δ = ${p.delta}, σ = ${run.config?.dp?.noiseMultiplier ?? '–'}; a node whose next round would pass its budget refuses it`;
  list.replaceChildren(...(nodes.length ? nodes.map(([id, eps]) => budgetBar(id, eps, p.epsilonBudget)) : [h('li', { class: 'muted' }, 'no DP round has run yet')]));
}

registerPanel({ name: 'privacy', renderRun: renderPrivacy });
