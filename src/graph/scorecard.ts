import type { Scorecard } from "../lab/scorecard.ts";

/** The scorecard's cells as words, the same on the terminal and in the SVG. */

export const SCORE_HEADERS = ["recipe", "probe", "hops", "RTT", "who reads the payload", "written by hand", "keys (own+others)"];

export function hopsText(c: Scorecard): string {
  if (!c.reach.reached) return c.reach.rttMs === undefined ? "unreachable" : "no tracepath answer";
  return `${c.reach.hops} (${c.reach.path.join(" > ")})`;
}

export function rttText(c: Scorecard): string {
  return c.reach.rttMs === undefined ? "-" : `${c.reach.rttMs.toFixed(2)} ms`;
}

/** "lighthouse: yes"; the far end's capture says whether the marker was sent through at all. */
export function payloadText(c: Scorecard): string {
  const middle = c.payload.middle
    .map((s) => `${s.as}: ${s.error ? `no capture (${s.error})` : s.reads ? "yes" : `no (${s.packets} packets)`}`)
    .join(", ");
  if (!c.payload.delivered.reads) return `${middle} (marker not delivered)`;
  return middle;
}

export function handText(c: Scorecard): string {
  const lines = Object.values(c.handWritten.configLines).reduce((a, b) => a + b, 0);
  return `${lines} config lines + ${c.handWritten.commands} commands`;
}

export function keysText(c: Scorecard): string {
  return c.keys.map((k) => `${k.node} ${k.own}+${k.others}`).join(", ");
}

export function scorecardRows(cards: Scorecard[]): string[][] {
  return [
    SCORE_HEADERS,
    ...cards.map((c) => [c.recipe, `${c.from} -> ${c.reach.target}`, hopsText(c), rttText(c), payloadText(c), handText(c), keysText(c)]),
  ];
}

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

const CHAR_W = 6.8;
const ROW_H = 22;
const PAD = 10;

/** A self-drawn table: a header row, one row per recipe, the payload cell red where a middle node reads it. */
export function scorecardSvg(cards: Scorecard[], caption = "Scorecard: measured in the running labs"): string {
  const rows = scorecardRows(cards);
  const widths = rows[0]!.map((_, i) => Math.ceil(Math.max(...rows.map((r) => (r[i] ?? "").length)) * CHAR_W + 2 * PAD));
  const width = widths.reduce((a, b) => a + b, 0) + 2;
  const top = 30;
  const height = top + rows.length * ROW_H + 8;
  const xs = widths.map((_, i) => 1 + widths.slice(0, i).reduce((a, b) => a + b, 0));
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="ui-monospace, Menlo, Consolas, monospace" font-size="11">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${PAD}" y="19" font-size="13" font-weight="bold" fill="#222">${esc(caption)}</text>`,
  ];
  rows.forEach((r, ri) => {
    const y = top + ri * ROW_H;
    const card = ri > 0 ? cards[ri - 1] : undefined;
    out.push(
      `<rect x="1" y="${y}" width="${width - 2}" height="${ROW_H}" fill="${ri === 0 ? "#e8edf3" : ri % 2 ? "#ffffff" : "#f6f8fa"}" stroke="#d0d7de"/>`,
    );
    r.forEach((cell, ci) => {
      const readsMiddle = card && ci === 4 && card.payload.middle.some((s) => s.reads);
      const unreachable = card && (ci === 2 || ci === 3) && !card.reach.reached;
      const fill = readsMiddle || unreachable ? "#b42318" : "#222";
      const weight = ri === 0 ? ' font-weight="bold"' : "";
      out.push(`<text x="${xs[ci]! + PAD}" y="${y + 15}" fill="${fill}"${weight}>${esc(cell)}</text>`);
    });
  });
  out.push("</svg>");
  return `${out.join("\n")}\n`;
}
