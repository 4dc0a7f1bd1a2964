// Try it: draw or upload a digit and ask a serving function to classify it.
import { $, h, pct } from './dom.js';
import { state } from './state.js';

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

export function renderServingOptions() {
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

export function initTry() {
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
