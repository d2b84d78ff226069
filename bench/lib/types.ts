/** The JSON each benchmark writes to bench/results/<name>.json, and what the summary reads. */

export interface Machine {
  cores: number;
  cpuModel: string;
  memoryGiB: number;
  kernel: string;
  engine: string;
  node: string;
  versions: { tailscale: string; headscale: string; debian: string };
  date: string;
  gitCommit: string;
  gitDirty: boolean;
}

export interface Column {
  key: string;
  label: string;
  unit?: string;
}

/** One bar of a chart; several segments stack (e.g. the phases of a start). */
export interface Bar {
  label: string;
  segments: { name: string; value: number }[];
  /** Text after the bar (defaults to the total). */
  note?: string;
}

export interface Chart {
  title: string;
  unit: string;
  bars: Bar[];
}

export interface Headline {
  label: string;
  value: string;
}

export interface BenchResult {
  name: string;
  title: string;
  /** "ok", "partial" (some parts skipped or failed, see notes) or "failed". */
  status: "ok" | "partial" | "failed";
  machine: Machine;
  params: Record<string, unknown>;
  durationS: number;
  columns: Column[];
  rows: Record<string, string | number | null>[];
  headlines: Headline[];
  chart: Chart;
  notes: string[];
  /** Per-run details for whoever wants to recompute something. */
  raw: unknown;
}
