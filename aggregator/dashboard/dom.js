// Shared DOM helpers and formatters of the dashboard's modules.

export const $ = (sel) => document.querySelector(sel);
export const SVG_NS = 'http://www.w3.org/2000/svg';
export const COLORS = ['#e11d48', '#0d9488', '#d97706', '#7c3aed', '#0284c7', '#65a30d', '#db2777', '#475569'];

/** Element helper: h('td', { class: 'num' }, 'text', child). */
export function h(tag, attrs = {}, ...children) {
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

export function s(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = String(text);
  return el;
}

export const pct = (x, d = 2) => (x === null || x === undefined ? '–' : `${(x * 100).toFixed(d)}%`);
export const num = (x, d = 3) => (x === null || x === undefined ? '–' : Number(x).toFixed(d));
export const secs = (ms) => (ms === null || ms === undefined ? '–' : ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`);
export const time = (iso) => (iso ? new Date(iso).toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' }) : '–');
export const bytes = (n) => (n > 1e6 ? `${(n / 1e6).toFixed(1)} MB` : `${(n / 1e3).toFixed(0)} kB`);
export const nodeColor = (id) => COLORS[(Number(String(id).replace(/\D/g, '')) || 0) % COLORS.length];

export async function getJSON(url) {
  const res = await fetch(url, { headers: { accept: 'application/json' } });
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return res.json();
}


export function withTitle(el, text) {
  el.append(s('title', {}, text));
  return el;
}
