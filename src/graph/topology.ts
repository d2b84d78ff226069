import type { LabPlan } from "../lab/plan.ts";
import { makePlan, type PlannedNode, resolveOptions } from "../lab/plan.ts";
import type { Recipe } from "../recipe/types.ts";

/** What is up, when the lab runs: container states by node key. */
export type NodeStates = Record<string, string>;

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function planOf(recipe: Recipe, plan?: LabPlan): LabPlan {
  return plan ?? makePlan(recipe, "default", resolveOptions(recipe, {}), "graph");
}

/**
 * The topology as SVG: one column per network (subnet in its title), nodes inside the
 * network they sit on, routers (several networks) between their networks, and the overlay
 * (tunnels solid, control links dashed) drawn over them. Running nodes are green.
 */
export function topologySvg(recipe: Recipe, plan?: LabPlan, states?: NodeStates): string {
  const p = planOf(recipe, plan);
  const nets = Object.values(p.networks);
  const colW = 300;
  const gap = 120;
  const boxW = 200;
  const boxH = 58;
  const top = 70;
  const rowH = 84;
  const nodes = Object.values(p.nodes);
  const colOf = (n: PlannedNode) => Object.keys(n.ip).map((k) => nets.findIndex((x) => x.key === k));
  const pos = new Map<string, { x: number; y: number }>();
  const rows: number[] = nets.map(() => 0);
  const bridgeRows = new Map<string, number>();
  for (const n of nodes) {
    const cols = colOf(n).sort();
    if (cols.length === 1) {
      const c = cols[0]!;
      pos.set(n.key, { x: 40 + c * (colW + gap) + (colW - boxW) / 2, y: top + 40 + rows[c]! * rowH });
      rows[c]!++;
    }
  }
  for (const n of nodes) {
    const cols = colOf(n).sort();
    if (cols.length > 1) {
      const a = cols[0]!;
      const key = cols.join(",");
      const r = bridgeRows.get(key) ?? Math.max(rows[a]!, rows[a + 1] ?? 0);
      bridgeRows.set(key, r + 1);
      pos.set(n.key, { x: 40 + a * (colW + gap) + colW - boxW / 2 + gap / 2, y: top + 40 + r * rowH });
      rows[a] = Math.max(rows[a]!, r + 1);
      if (rows[a + 1] !== undefined) rows[a + 1] = Math.max(rows[a + 1]!, r + 1);
    }
  }
  const maxRows = Math.max(1, ...rows);
  const height = top + 40 + maxRows * rowH + 60;
  const width = 80 + nets.length * colW + (nets.length - 1) * gap;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="13">`,
  );
  out.push(`<title>${esc(recipe.name)}: ${esc(recipe.title)}</title>`);
  out.push(`<rect width="100%" height="100%" fill="#ffffff"/>`);
  out.push(`<text x="40" y="32" font-size="18" font-weight="bold">${esc(recipe.name)}: ${esc(recipe.title)}</text>`);
  nets.forEach((net, i) => {
    const x = 40 + i * (colW + gap);
    out.push(`<rect x="${x}" y="${top}" width="${colW}" height="${height - top - 30}" rx="14" fill="#eef4fb" stroke="#7da3cf"/>`);
    out.push(`<text x="${x + 14}" y="${top + 24}" font-weight="bold" fill="#2c5282">${esc(net.key)} ${esc(net.subnet)}</text>`);
  });
  const center = (k: string) => {
    const q = pos.get(k)!;
    return { x: q.x + boxW / 2, y: q.y + boxH / 2 };
  };
  for (const o of recipe.overlay) {
    if (!pos.has(o.between[0]) || !pos.has(o.between[1])) continue;
    const a = center(o.between[0]);
    const b = center(o.between[1]);
    const mx = (a.x + b.x) / 2 + (a.y === b.y ? 0 : 40);
    const my = (a.y + b.y) / 2 - (a.y === b.y ? 40 : 0);
    const style = o.kind === "control" ? `stroke="#999" stroke-dasharray="6 5"` : `stroke="#c05621" stroke-width="3"`;
    out.push(`<path class="overlay ${o.kind}" d="M ${a.x} ${a.y} Q ${mx} ${my} ${b.x} ${b.y}" fill="none" ${style}/>`);
    if (o.label)
      out.push(
        `<text x="${mx}" y="${my - 6}" text-anchor="middle" font-size="11" fill="${o.kind === "control" ? "#666" : "#9c4221"}">${esc(o.label)}</text>`,
      );
  }
  for (const n of nodes) {
    const q = pos.get(n.key)!;
    const state = states?.[n.key];
    const fill = state === undefined ? "#ffffff" : state === "running" ? "#c6f6d5" : "#e2e8f0";
    out.push(`<g class="node" data-node="${esc(n.key)}"${state ? ` data-state="${esc(state)}"` : ""}>`);
    out.push(`<rect x="${q.x}" y="${q.y}" width="${boxW}" height="${boxH}" rx="8" fill="${fill}" stroke="#2d3748"/>`);
    out.push(`<text x="${q.x + 10}" y="${q.y + 18}" font-weight="bold">${esc(n.key)}${state ? ` (${esc(state)})` : ""}</text>`);
    out.push(`<text x="${q.x + 10}" y="${q.y + 34}" font-size="11" fill="#4a5568">${esc(n.container)}</text>`);
    out.push(`<text x="${q.x + 10}" y="${q.y + 49}" font-size="11" fill="#4a5568">${esc(Object.values(n.ip).join(" / "))}</text>`);
    out.push("</g>");
  }
  out.push("</svg>");
  return `${out.join("\n")}\n`;
}

/** The same picture as mermaid text, for docs. */
export function topologyMermaid(recipe: Recipe, plan?: LabPlan, states?: NodeStates): string {
  const p = planOf(recipe, plan);
  const id = (s: string) => s.replace(/[^A-Za-z0-9_]/g, "_");
  const lines = ["flowchart LR"];
  const multi = Object.values(p.nodes).filter((n) => Object.keys(n.ip).length > 1);
  for (const net of Object.values(p.networks)) {
    lines.push(`  subgraph ${id(`net_${net.key}`)}["${net.key} ${net.subnet}"]`);
    for (const n of Object.values(p.nodes)) {
      if (Object.keys(n.ip).length === 1 && n.ip[net.key]) {
        lines.push(`    ${id(n.key)}["${n.key}<br/>${n.container}<br/>${n.ip[net.key]}${states?.[n.key] ? ` (${states[n.key]})` : ""}"]`);
      }
    }
    lines.push("  end");
  }
  for (const n of multi) {
    lines.push(`  ${id(n.key)}["${n.key}<br/>${n.container}<br/>${Object.values(n.ip).join(" / ")}"]`);
    for (const net of Object.keys(n.ip)) lines.push(`  ${id(n.key)} --- ${id(`net_${net}`)}`);
  }
  for (const o of recipe.overlay) {
    const arrow = o.kind === "control" ? "-.-" : "===";
    lines.push(`  ${id(o.between[0])} ${arrow}${o.label ? `|"${o.label}"|` : ""} ${id(o.between[1])}`);
  }
  return `${lines.join("\n")}\n`;
}
