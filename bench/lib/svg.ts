/** Hand-written SVG charts (no dependencies): line charts and stacked bars. */

const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
const W = 720;
const H = 420;
const M = { top: 48, right: 180, bottom: 56, left: 72 };

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function fmt(v: number): string {
  const a = Math.abs(v);
  if (a === 0) return '0';
  if (a >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (a >= 1e4) return `${+(v / 1e3).toPrecision(3)}k`;
  if (a >= 100) return String(Math.round(v));
  if (a >= 1) return String(+v.toPrecision(3));
  return String(+v.toPrecision(2));
}

function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

function logTicks(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) out.push(10 ** e);
  return out;
}

function frame(title: string, xLabel: string, yLabel: string, body: string): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">
<rect width="${W}" height="${H}" fill="#fff"/>
<text x="${W / 2 - M.right / 2 + M.left / 2}" y="24" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>
<text x="${M.left + (W - M.left - M.right) / 2}" y="${H - 14}" text-anchor="middle">${esc(xLabel)}</text>
<text transform="translate(18 ${M.top + (H - M.top - M.bottom) / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>
${body}
</svg>
`;
}

export interface Series {
  name: string;
  points: [number, number][];
  dashed?: boolean;
}

export interface LineChart {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  logX?: boolean;
  logY?: boolean;
}

export function lineChart(c: LineChart): string {
  const pts = c.series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!c.logX || x > 0) && (!c.logY || y > 0));
  if (pts.length === 0) return frame(c.title, c.xLabel, c.yLabel, '<text x="200" y="200">no data</text>');
  const xs = pts.map((p) => p[0]);
  const ys = pts.map((p) => p[1]);
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [c.logY ? Math.min(...ys) : Math.min(0, ...ys), Math.max(...ys)];
  if (c.logX) [x0, x1] = [10 ** Math.floor(Math.log10(x0)), 10 ** Math.ceil(Math.log10(x1))];
  if (c.logY) [y0, y1] = [10 ** Math.floor(Math.log10(y0)), 10 ** Math.ceil(Math.log10(y1))];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) y1 = y0 + 1;
  if (!c.logY) y1 *= 1.08;
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const sx = (x: number) => M.left + (c.logX ? (Math.log10(x) - Math.log10(x0)) / (Math.log10(x1) - Math.log10(x0)) : (x - x0) / (x1 - x0)) * pw;
  const sy = (y: number) => M.top + ph - (c.logY ? (Math.log10(y) - Math.log10(y0)) / (Math.log10(y1) - Math.log10(y0)) : (y - y0) / (y1 - y0)) * ph;
  const parts: string[] = [];
  const xt = c.logX ? logTicks(x0, x1) : niceTicks(x0, x1);
  const yt = c.logY ? logTicks(y0, y1) : niceTicks(y0, y1);
  for (const t of yt) parts.push(`<line x1="${M.left}" x2="${M.left + pw}" y1="${sy(t)}" y2="${sy(t)}" stroke="#e5e5e5"/><text x="${M.left - 6}" y="${sy(t) + 4}" text-anchor="end">${fmt(t)}</text>`);
  for (const t of xt) parts.push(`<line x1="${sx(t)}" x2="${sx(t)}" y1="${M.top}" y2="${M.top + ph}" stroke="#f0f0f0"/><text x="${sx(t)}" y="${M.top + ph + 16}" text-anchor="middle">${fmt(t)}</text>`);
  parts.push(`<rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  c.series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length];
    const valid = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!c.logX || x > 0) && (!c.logY || y > 0)).sort((a, b) => a[0] - b[0]);
    if (valid.length) {
      parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''} points="${valid.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ')}"/>`);
      for (const [x, y] of valid) parts.push(`<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="3" fill="${color}"><title>${esc(s.name)}: ${fmt(x)} → ${fmt(y)}</title></circle>`);
    }
    const ly = M.top + 10 + i * 20;
    parts.push(`<line x1="${W - M.right + 12}" x2="${W - M.right + 36}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/><text x="${W - M.right + 42}" y="${ly + 4}">${esc(s.name)}</text>`);
  });
  return frame(c.title, c.xLabel, c.yLabel, parts.join('\n'));
}

export interface StackedBar {
  label: string;
  parts: { name: string; value: number }[];
}

export function stackedBars(c: { title: string; yLabel: string; xLabel?: string; bars: StackedBar[] }): string {
  const names = [...new Set(c.bars.flatMap((b) => b.parts.map((p) => p.name)))];
  const totals = c.bars.map((b) => b.parts.reduce((n, p) => n + Math.max(0, p.value), 0));
  const y1 = Math.max(1, ...totals) * 1.1;
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const sy = (y: number) => M.top + ph - (y / y1) * ph;
  const parts: string[] = [];
  for (const t of niceTicks(0, y1)) parts.push(`<line x1="${M.left}" x2="${M.left + pw}" y1="${sy(t)}" y2="${sy(t)}" stroke="#e5e5e5"/><text x="${M.left - 6}" y="${sy(t) + 4}" text-anchor="end">${fmt(t)}</text>`);
  const slot = pw / Math.max(1, c.bars.length);
  const bw = Math.min(80, slot * 0.6);
  c.bars.forEach((b, i) => {
    const x = M.left + slot * i + (slot - bw) / 2;
    let base = 0;
    for (const p of b.parts) {
      const v = Math.max(0, p.value);
      if (v === 0) continue;
      const color = PALETTE[names.indexOf(p.name) % PALETTE.length];
      parts.push(`<rect x="${x.toFixed(1)}" y="${sy(base + v).toFixed(1)}" width="${bw.toFixed(1)}" height="${(sy(base) - sy(base + v)).toFixed(1)}" fill="${color}"><title>${esc(p.name)}: ${fmt(v)}</title></rect>`);
      base += v;
    }
    parts.push(`<text x="${(x + bw / 2).toFixed(1)}" y="${(sy(base) - 5).toFixed(1)}" text-anchor="middle">${fmt(base)}</text>`);
    parts.push(`<text x="${(x + bw / 2).toFixed(1)}" y="${M.top + ph + 16}" text-anchor="middle">${esc(b.label)}</text>`);
  });
  parts.push(`<rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  names.forEach((n, i) => {
    const ly = M.top + 10 + i * 20;
    parts.push(`<rect x="${W - M.right + 12}" y="${ly - 7}" width="14" height="14" fill="${PALETTE[i % PALETTE.length]}"/><text x="${W - M.right + 32}" y="${ly + 4}">${esc(n)}</text>`);
  });
  return frame(c.title, c.xLabel ?? '', c.yLabel, parts.join('\n'));
}
