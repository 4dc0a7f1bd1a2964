// edgefl dashboard: plain DOM + SVG, no dependencies. Data comes from the aggregator's
// JSON routes; GET /events (server-sent events) tells the page when to refresh.
// The page's CSP forbids inline styles and scripts, so everything is built with the DOM API.

const $ = (sel) => document.querySelector(sel);
const SVG_NS = 'http://www.w3.org/2000/svg';
const COLORS = ['#e11d48', '#0d9488', '#d97706', '#7c3aed', '#0284c7', '#65a30d', '#db2777', '#475569'];

const state = {
  runs: [],
  runId: null, // selected run
  pinned: false, // true when the user picked a run (otherwise the newest one is followed)
  run: null, // GET /runs/:id
  nodes: [],
  models: [],
  promoted: null, // GET /models/promoted: what is promoted, what each node serves, history
};

/** Element helper: h('td', { class: 'num' }, 'text', child). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== undefined && c !== null) el.append(c instanceof Node ? c : String(c));
  return el;
}

function s(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = String(text);
  return el;
}

const pct = (x, d = 2) => (x === null || x === undefined ? '–' : `${(x * 100).toFixed(d)}%`);
const num = (x, d = 3) => (x === null || x === undefined ? '–' : Number(x).toFixed(d));
const secs = (ms) => (ms === null || ms === undefined ? '–' : ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`);
const time = (iso) => (iso ? new Date(iso).toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' }) : '–');
const bytes = (n) => (n > 1e6 ? `${(n / 1e6).toFixed(1)} MB` : `${(n / 1e3).toFixed(0)} kB`);
const nodeColor = (id) => COLORS[(Number(String(id).replace(/\D/g, '')) || 0) % COLORS.length];

async function getJSON(url) {
  const res = await fetch(url, { headers: { accept: 'application/json' } });
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return res.json();
}

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

const timers = new Map();
/** Coalesces bursts of events into one reload per loader. */
function schedule(fn, delay = 250) {
  if (timers.has(fn)) return;
  timers.set(
    fn,
    setTimeout(() => {
      timers.delete(fn);
      fn().catch(showLoadError);
    }, delay),
  );
}

function showLoadError(e) {
  console.error(e);
  $('#live').title = `error: ${e.message}`;
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

// ---- chart -----------------------------------------------------------------

function renderChart(run) {
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

function withTitle(el, text) {
  el.append(s('title', {}, text));
  return el;
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

// ---- nodes -----------------------------------------------------------------

/** Latest training result of a node in the selected run (newest round first). */
function lastTraining(nodeId) {
  const rounds = [...(state.run?.rounds ?? [])].sort((a, b) => b.round - a.round);
  for (const r of rounds) {
    const n = (r.nodes ?? []).find((m) => m.nodeId === nodeId);
    if (n) return { ...n, round: r.round };
  }
  return undefined;
}

function renderNodes() {
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

function renderPromotion() {
  const p = state.promoted;
  const fleet = p?.fleet;
  $('#promoted-fleet').textContent = fleet ? `v${fleet.version}, held-out ${heldOut(fleet.figures)} — ${fleet.reason} (${fleet.by}, ${time(fleet.at)})` : 'nothing promoted yet: serving functions are not ready';
  $('#promotion-history').replaceChildren(...(p?.history ?? []).slice(0, 10).map((x) => h('li', { 'data-promotion': x.id }, describe(x))));
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
}

function refreshAll() {
  schedule(loadRuns, 0);
  schedule(loadNodes, 0);
  schedule(loadModels, 0);
  schedule(loadPromoted, 0);
}

// ---- try it ----------------------------------------------------------------

const pad = {
  canvas: null,
  ctx: null,
  drawing: false,
  dirty: false,
  init() {
    const c = (this.canvas = $('#try-canvas'));
    this.ctx = c.getContext('2d');
    this.clear();
    const point = (e) => {
      const r = c.getBoundingClientRect();
      return [((e.clientX - r.left) * c.width) / r.width, ((e.clientY - r.top) * c.height) / r.height];
    };
    c.addEventListener('pointerdown', (e) => {
      e.preventDefault();
      c.setPointerCapture(e.pointerId);
      this.drawing = true;
      this.dirty = true;
      const [x, y] = point(e);
      this.ctx.beginPath();
      this.ctx.moveTo(x, y);
      this.ctx.lineTo(x + 0.1, y + 0.1);
      this.ctx.stroke();
    });
    c.addEventListener('pointermove', (e) => {
      if (!this.drawing) return;
      for (const ev of e.getCoalescedEvents?.() ?? [e]) {
        const [x, y] = point(ev);
        this.ctx.lineTo(x, y);
      }
      this.ctx.stroke();
    });
    const end = () => {
      this.drawing = false;
    };
    c.addEventListener('pointerup', end);
    c.addEventListener('pointercancel', end);
  },
  clear() {
    const { ctx, canvas } = this;
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.strokeStyle = '#000';
    ctx.lineWidth = canvas.width / 12;
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    this.dirty = false;
  },
  /** Fits an uploaded image into the square, centred on white. */
  async drawImage(file) {
    const bmp = await createImageBitmap(file);
    this.clear();
    const { canvas, ctx } = this;
    const k = Math.min(canvas.width / bmp.width, canvas.height / bmp.height);
    const w = bmp.width * k, hh = bmp.height * k;
    ctx.drawImage(bmp, (canvas.width - w) / 2, (canvas.height - hh) / 2, w, hh);
    bmp.close?.();
    this.dirty = true;
  },
  blob() {
    return new Promise((resolve, reject) => this.canvas.toBlob((b) => (b ? resolve(b) : reject(new Error('could not encode the drawing'))), 'image/png'));
  },
};

function servingTargets() {
  return state.nodes.filter((n) => n.servingUrl).map((n) => ({ id: n.id, url: n.servingUrl.replace(/\/+$/, '') }));
}

function renderServingOptions() {
  const sel = $('#serving-select');
  const before = sel.value;
  const opts = servingTargets().map((t) => h('option', { value: t.url }, `${t.id} — ${t.url}`));
  opts.push(h('option', { value: 'custom' }, 'other URL …'));
  sel.replaceChildren(...opts);
  if ([...sel.options].some((o) => o.value === before)) sel.value = before;
  $('#custom-url-field').hidden = sel.value !== 'custom';
}

function chosenServing() {
  const sel = $('#serving-select');
  if (sel.value === 'custom') {
    const url = $('#custom-url').value.trim().replace(/\/+$/, '');
    return url ? { id: new URL(url).host, url } : undefined;
  }
  const t = servingTargets().find((x) => x.url === sel.value);
  return t;
}

async function classify() {
  const out = $('#result');
  const target = chosenServing();
  if (!target) return void out.replaceChildren(h('p', { class: 'error' }, 'No serving function to ask: pick an edge node or enter a URL.'));
  if (!pad.dirty) return void out.replaceChildren(h('p', { class: 'muted' }, 'Draw a digit first (or upload an image).'));
  const button = $('#classify');
  button.disabled = true;
  try {
    const body = await pad.blob();
    const headers = { 'content-type': 'image/png' };
    const key = $('#api-key').value.trim();
    if (key) headers.authorization = `Bearer ${key}`;
    const t0 = performance.now();
    let res;
    try {
      res = await fetch(`${target.url}/v1/models/mnist:classify`, { method: 'POST', headers, body });
    } catch {
      throw new Error(`could not reach ${target.url} (down, or not allowed by this page's Content-Security-Policy: add it to EDGEFL_DASHBOARD_CONNECT_SRC)`);
    }
    const data = await res.json().catch(() => ({}));
    const latency = performance.now() - t0;
    if (!res.ok) throw new Error(data.error?.message ?? data.error ?? `HTTP ${res.status}`);
    const r = data.results?.[0];
    if (!r) throw new Error('the serving function returned no result');
    out.replaceChildren(
      h(
        'ol',
        { class: 'top3' },
        r.top3.map((c) => {
          const fill = h('span');
          fill.style.width = `${(c.probability * 100).toFixed(1)}%`;
          return h('li', { 'data-class': c.class }, h('span', { class: 'digit' }, c.class), h('span', { class: 'bar' }, fill), h('span', { class: 'p' }, pct(c.probability, 1)));
        }),
      ),
      h(
        'p',
        { class: 'meta', 'data-model-version': data.model_version, 'data-latency-ms': Math.round(latency) },
        `Model v${data.model_version} on ${target.id} answered in ${Math.round(latency)} ms.`,
      ),
    );
  } catch (e) {
    out.replaceChildren(h('p', { class: 'error' }, e.message));
  } finally {
    button.disabled = false;
  }
}

function initTry() {
  pad.init();
  $('#clear').addEventListener('click', () => {
    pad.clear();
    $('#result').replaceChildren();
  });
  $('#classify').addEventListener('click', () => void classify());
  $('#serving-select').addEventListener('change', () => ($('#custom-url-field').hidden = $('#serving-select').value !== 'custom'));
  $('#upload').addEventListener('change', async (e) => {
    const file = e.target.files?.[0];
    e.target.value = '';
    if (!file) return;
    try {
      await pad.drawImage(file);
      await classify();
    } catch (err) {
      $('#result').replaceChildren(h('p', { class: 'error' }, `could not read that image: ${err.message}`));
    }
  });
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
