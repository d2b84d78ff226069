/**
 * `npm run bench [-- --only NAME[,NAME]] [-- --OPTION VALUE ...] [-- --summary]`
 *
 * Runs the benchmarks (all by default), writes bench/results/<name>.json for each, prints its
 * table, and regenerates bench/README.md and bench/charts/<name>.svg from all results.
 * Takes the shared engine lock (/tmp/wg3-e2e.lock) itself unless it already runs under it.
 */
import { controlPlane } from "./control-plane.ts";
import { dataplane } from "./dataplane.ts";
import { e2e } from "./e2e.ts";
import { failover } from "./failover.ts";
import { footprint } from "./footprint.ts";
import { labStart } from "./lab-start.ts";
import type { Benchmark } from "./lib/bench.ts";
import { reexecUnderLock } from "./lib/lock.ts";
import { machine } from "./lib/machine.ts";
import { writeResult, writeSummary } from "./lib/results.ts";
import { textTable } from "./lib/table.ts";
import { nat } from "./nat.ts";
import { policyUpdate } from "./policy.ts";
import { scorecard } from "./scorecard.ts";

const BENCHMARKS: Benchmark[] = [labStart, e2e, footprint, dataplane, controlPlane, nat, failover, policyUpdate, scorecard];

function help(): string {
  const lines = [
    "Usage: npm run bench [-- --only NAME[,NAME...]] [-- --OPTION VALUE ...]",
    "       npm run bench -- --summary      (only regenerate bench/README.md and the charts)",
    "",
    "Benchmarks (all run by default, in this order):",
  ];
  for (const b of BENCHMARKS) {
    lines.push(`  ${b.name.padEnd(15)}${b.title}\n${"".padEnd(17)}(${b.minutes})`);
    for (const [k, o] of Object.entries(b.options)) lines.push(`${`      --${k} ${o.default}`.padEnd(44)} ${o.help}`);
  }
  lines.push("", "Results: bench/results/<name>.json; summary: bench/README.md; charts: bench/charts/<name>.svg.");
  return lines.join("\n");
}

function parse(argv: string[]): { only?: string[]; summary: boolean; help: boolean; opts: Record<string, string> } {
  const out = { only: undefined as string[] | undefined, summary: false, help: false, opts: {} as Record<string, string> };
  const known = new Set(BENCHMARKS.flatMap((b) => Object.keys(b.options)));
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--help" || a === "-h") out.help = true;
    else if (a === "--summary") out.summary = true;
    else if (a === "--only") out.only = (argv[++i] ?? "").split(",").filter(Boolean);
    else if (a.startsWith("--") && known.has(a.slice(2).split("=")[0]!)) {
      const [k, v] = a.slice(2).includes("=") ? a.slice(2).split(/=(.*)/) : [a.slice(2), argv[++i]];
      if (v === undefined) throw new Error(`--${k} needs a value`);
      out.opts[k!] = v;
    } else throw new Error(`unknown argument ${a}; see npm run bench -- --help`);
  }
  if (out.only) {
    const bad = out.only.filter((n) => !BENCHMARKS.some((b) => b.name === n));
    if (bad.length) throw new Error(`unknown benchmark ${bad.join(", ")}; the benchmarks are: ${BENCHMARKS.map((b) => b.name).join(", ")}`);
  }
  return out;
}

async function main(): Promise<number> {
  let args: ReturnType<typeof parse>;
  try {
    args = parse(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(`${help()}\n`);
    return 0;
  }
  if (args.summary) {
    process.stdout.write(`wrote ${writeSummary()}\n`);
    return 0;
  }
  const locked = await reexecUnderLock();
  if (locked !== undefined) return locked;

  const abort = new AbortController();
  process.on("SIGINT", () => {
    if (abort.signal.aborted) process.exit(130);
    process.stderr.write("\nInterrupted: stopping after cleaning up the current step (Ctrl-C again to quit at once)...\n");
    abort.abort();
  });
  const selected = BENCHMARKS.filter((b) => !args.only || args.only.includes(b.name));
  const m = await machine();
  process.stderr.write(
    `machine: ${m.cores} cores, ${m.memoryGiB} GiB, kernel ${m.kernel}, ${m.engine}, commit ${m.gitCommit}${m.gitDirty ? "+" : ""}\n`,
  );
  let failed = 0;
  const t0 = Date.now();
  for (const b of selected) {
    if (abort.signal.aborted) break;
    const opts = Object.fromEntries(Object.entries(b.options).map(([k, o]) => [k, args.opts[k] ?? o.default]));
    process.stderr.write(`\n== ${b.name}: ${b.title}\n`);
    const tb = Date.now();
    try {
      const r = await b.run({ machine: m, opts, log: (l) => process.stderr.write(`   ${l}\n`), signal: abort.signal });
      const path = writeResult(r);
      process.stdout.write(`\n${r.title} [${r.status}] (${Math.round((Date.now() - tb) / 1000)} s)\n${textTable(r)}\n`);
      for (const h of r.headlines) process.stdout.write(`  ${h.label}: ${h.value}\n`);
      process.stdout.write(`  -> ${path}\n`);
    } catch (e) {
      failed++;
      process.stderr.write(`!! ${b.name} failed after ${Math.round((Date.now() - tb) / 1000)} s: ${(e as Error).message}\n`);
    }
  }
  process.stdout.write(`\nwrote ${writeSummary()} (total ${Math.round((Date.now() - t0) / 1000)} s)\n`);
  return abort.signal.aborted ? 130 : failed ? 1 : 0;
}

process.exitCode = await main();
