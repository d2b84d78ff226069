import type { BenchResult } from "./types.ts";

export function cell(v: string | number | null | undefined): string {
  if (v === null || v === undefined) return "-";
  if (typeof v === "number") return Number.isFinite(v) ? String(v) : "-";
  return v;
}

function header(r: BenchResult): string[] {
  return r.columns.map((c) => (c.unit ? `${c.label} (${c.unit})` : c.label));
}

/** A plain-text table for the terminal. */
export function textTable(r: BenchResult): string {
  const rows = [header(r), ...r.rows.map((row) => r.columns.map((c) => cell(row[c.key])))];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((x) => (x[i] ?? "").length)));
  const line = (x: string[]) =>
    x
      .map((c, i) => c.padEnd(widths[i]!))
      .join("  ")
      .trimEnd();
  return [line(rows[0]!), widths.map((w) => "-".repeat(w)).join("  "), ...rows.slice(1).map(line)].join("\n");
}

/** The same table in Markdown. */
export function markdownTable(r: BenchResult): string {
  const esc = (s: string) => s.replace(/\|/g, "\\|");
  const rows = r.rows.map((row) => `| ${r.columns.map((c) => esc(cell(row[c.key]))).join(" | ")} |`);
  return [`| ${header(r).map(esc).join(" | ")} |`, `|${r.columns.map(() => "---").join("|")}|`, ...rows].join("\n");
}
