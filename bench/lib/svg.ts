import type { Chart } from "./types.ts";

/** Hand-written SVG: horizontal bars, stacked when a bar has several segments, with a legend. */
const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function niceStep(max: number, ticks = 5): number {
  if (!(max > 0)) return 1;
  const raw = max / ticks;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const n = raw / mag;
  return (n <= 1 ? 1 : n <= 2 ? 2 : n <= 5 ? 5 : 10) * mag;
}

function fmt(v: number): string {
  if (v === 0) return "0";
  if (Math.abs(v) >= 100) return String(Math.round(v));
  if (Math.abs(v) >= 10) return v.toFixed(1).replace(/\.0$/, "");
  return v.toFixed(2).replace(/0$/, "").replace(/\.0$/, "");
}

export function barChartSvg(chart: Chart): string {
  const charW = 6.6;
  const labelW = Math.ceil(Math.max(60, ...chart.bars.map((b) => b.label.length * charW)) + 12);
  const noteW = Math.ceil(Math.max(40, ...chart.bars.map((b) => (b.note ?? "").length * charW + 8), 60));
  const plotW = 460;
  const width = labelW + plotW + noteW + 20;
  const barH = 20;
  const gap = 8;
  const top = 40;
  const names = [...new Set(chart.bars.flatMap((b) => b.segments.map((s) => s.name)))];
  const legend = names.length > 1 || (names.length === 1 && names[0] !== "");
  const legendCols = Math.max(1, Math.floor((plotW + noteW) / 110));
  const legendRows = legend ? Math.ceil(names.length / legendCols) : 0;
  const plotH = chart.bars.length * (barH + gap);
  const height = top + plotH + 30 + legendRows * 18 + 10;
  const totals = chart.bars.map((b) => b.segments.reduce((a, s) => a + Math.max(0, s.value), 0));
  const step = niceStep(Math.max(0, ...totals));
  const max = Math.max(step, Math.ceil(Math.max(0, ...totals) / step) * step);
  const x = (v: number) => labelW + (v / max) * plotW;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12" role="img">`,
  );
  out.push(`<title>${esc(chart.title)}</title>`);
  out.push(`<rect width="100%" height="100%" fill="#ffffff"/>`);
  out.push(`<text x="${width / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">${esc(chart.title)}</text>`);
  for (let v = 0; v <= max + 1e-9; v += step) {
    const xv = x(v);
    out.push(`<line x1="${xv}" y1="${top - 4}" x2="${xv}" y2="${top + plotH}" stroke="#e0e0e0"/>`);
    out.push(`<text x="${xv}" y="${top + plotH + 14}" text-anchor="middle" fill="#555">${fmt(v)}</text>`);
  }
  out.push(`<text x="${labelW + plotW / 2}" y="${top + plotH + 28}" text-anchor="middle" fill="#333">${esc(chart.unit)}</text>`);
  chart.bars.forEach((b, i) => {
    const y = top + i * (barH + gap);
    out.push(`<text x="${labelW - 8}" y="${y + barH / 2 + 4}" text-anchor="end">${esc(b.label)}</text>`);
    let acc = 0;
    for (const s of b.segments) {
      if (!(s.value > 0)) continue;
      const color = PALETTE[names.indexOf(s.name) % PALETTE.length];
      out.push(
        `<rect x="${x(acc).toFixed(1)}" y="${y}" width="${Math.max(0.5, x(acc + s.value) - x(acc)).toFixed(1)}" height="${barH}" fill="${color}"><title>${esc(`${b.label}: ${s.name ? `${s.name} ` : ""}${fmt(s.value)} ${chart.unit}`)}</title></rect>`,
      );
      acc += s.value;
    }
    out.push(`<text x="${(x(acc) + 6).toFixed(1)}" y="${y + barH / 2 + 4}" fill="#333">${esc(b.note ?? fmt(totals[i]!))}</text>`);
  });
  if (legend) {
    const ly = top + plotH + 44;
    names.forEach((n, i) => {
      const lx = labelW + (i % legendCols) * 110;
      const yy = ly + Math.floor(i / legendCols) * 18;
      out.push(`<rect x="${lx}" y="${yy - 10}" width="12" height="12" fill="${PALETTE[i % PALETTE.length]}"/>`);
      out.push(`<text x="${lx + 16}" y="${yy}">${esc(n)}</text>`);
    });
  }
  out.push("</svg>");
  return `${out.join("\n")}\n`;
}
