import { spawn } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { ROOT } from "../src/paths.ts";
import { type BenchContext, type Benchmark, checkAborted, num, warmEngine } from "./lib/bench.ts";
import { median, secs } from "./lib/stats.ts";

interface VitestJson {
  numPassedTests: number;
  numFailedTests: number;
  numTotalTests: number;
  success: boolean;
  testResults: { name: string; startTime: number; endTime: number; status: string }[];
}

/** One warm `vitest run --project e2e` with the JSON reporter: wall time per file and in total. */
async function once(ctx: BenchContext): Promise<{ wallMs: number; report: VitestJson }> {
  const out = join(tmpdir(), `wg3-bench-e2e-${process.pid}-${Date.now()}.json`);
  const t0 = performance.now();
  const child = spawn(
    join(ROOT, "node_modules", ".bin", "vitest"),
    ["run", "--project", "e2e", "--reporter=dot", "--reporter=json", `--outputFile.json=${out}`],
    {
      cwd: ROOT,
      stdio: ["ignore", "ignore", "pipe"],
      env: { ...process.env, WG3_VERBOSE: undefined },
    },
  );
  let err = "";
  child.stderr.on("data", (b: Buffer) => {
    err = (err + b).slice(-4000);
  });
  const onAbort = () => child.kill("SIGINT");
  ctx.signal.addEventListener("abort", onAbort, { once: true });
  const code = await new Promise<number>((resolve) => child.on("close", (c) => resolve(c ?? -1)));
  ctx.signal.removeEventListener("abort", onAbort);
  const wallMs = performance.now() - t0;
  let report: VitestJson;
  try {
    report = JSON.parse(readFileSync(out, "utf8"));
  } catch {
    throw new Error(`vitest exited ${code} without a JSON report: ${err.trim().slice(-1500)}`);
  } finally {
    rmSync(out, { force: true });
  }
  return { wallMs, report };
}

export const e2e: Benchmark = {
  name: "e2e",
  title: "E2E suite wall time, warm",
  minutes: "~5 min a run",
  options: { "e2e-runs": { default: "1", help: "how many times to run the e2e project (median per file)" } },
  async run(ctx) {
    const t0 = Date.now();
    await warmEngine(ctx);
    const n = num(ctx, "e2e-runs");
    const runs: { wallMs: number; report: VitestJson }[] = [];
    for (let i = 0; i < n; i++) {
      checkAborted(ctx.signal);
      const r = await once(ctx);
      runs.push(r);
      ctx.log(`e2e run ${i + 1}/${n}: ${secs(r.wallMs)} s, ${r.report.numPassedTests} passed, ${r.report.numFailedTests} failed`);
    }
    const files = [...new Set(runs.flatMap((r) => r.report.testResults.map((t) => basename(t.name))))].sort();
    const perFile = files.map((f) => {
      const durations = runs.flatMap((r) => r.report.testResults.filter((t) => basename(t.name) === f).map((t) => t.endTime - t.startTime));
      const statuses = runs.flatMap((r) => r.report.testResults.filter((t) => basename(t.name) === f).map((t) => t.status));
      return { file: f, ms: median(durations), status: [...new Set(statuses)].join(",") };
    });
    const wall = median(runs.map((r) => r.wallMs));
    const failed = runs.some((r) => !r.report.success);
    const rows = [
      ...perFile.map((p) => ({ file: p.file, seconds: secs(p.ms), status: p.status })),
      { file: "total (vitest wall time, incl. global setup)", seconds: secs(wall), status: failed ? "failed" : "passed" },
    ];
    return {
      name: "e2e",
      title: this.title,
      status: failed ? "partial" : "ok",
      machine: ctx.machine,
      params: { runs: n },
      durationS: (Date.now() - t0) / 1000,
      columns: [
        { key: "file", label: "test file" },
        { key: "seconds", label: "wall time", unit: "s" },
        { key: "status", label: "result" },
      ],
      rows,
      headlines: [
        { label: "e2e total, warm", value: `${secs(wall)} s` },
        { label: "tests", value: `${runs.at(-1)!.report.numPassedTests} passed, ${runs.at(-1)!.report.numFailedTests} failed` },
      ],
      chart: {
        title: "E2E wall time per test file, warm (files run one at a time)",
        unit: "seconds",
        bars: [
          ...perFile.map((p) => ({ label: p.file, segments: [{ name: "", value: secs(p.ms) }] })),
          { label: "total", segments: [{ name: "", value: secs(wall) }] },
        ],
      },
      notes: [
        "`vitest run --project e2e` with the JSON reporter; per file: its start to end as vitest reports it; total: the whole process, including the global setup (engine, binaries, image check).",
      ],
      raw: runs.map((r) => ({
        wallMs: Math.round(r.wallMs),
        files: r.report.testResults.map((t) => ({ file: basename(t.name), ms: t.endTime - t.startTime, status: t.status })),
      })),
    };
  },
};
