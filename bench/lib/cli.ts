import { spawn } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT } from "../../src/paths.ts";

export const START_TS = join(ROOT, "start.ts");

export interface CliRun {
  args: string[];
  code: number;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
  /** Steps the command's progress finished (title, ms, ok, end epoch ms), when timings were asked for. */
  steps: { title: string; ms: number; ok: boolean; end: number }[];
}

/**
 * Run `./start.ts ARGS` as a person would (stdin not a TTY: never attaches), timing it from
 * spawn to exit. `timings: true` collects its progress steps through WG3_TIMINGS_FILE.
 */
export async function startTs(
  args: string[],
  opts: { timings?: boolean; env?: Record<string, string>; timeoutMs?: number; onSpawn?: (kill: (s: NodeJS.Signals) => void) => void } = {},
): Promise<CliRun> {
  const file = join(tmpdir(), `wg3-timings-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}.jsonl`);
  const env: Record<string, string | undefined> = { ...process.env, ...opts.env, WG3_VERBOSE: undefined };
  if (opts.timings) env.WG3_TIMINGS_FILE = file;
  const t0 = performance.now();
  const child = spawn(START_TS, args, { cwd: ROOT, env: env as NodeJS.ProcessEnv, stdio: ["ignore", "pipe", "pipe"] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on("data", (b: Buffer) => out.push(b));
  child.stderr.on("data", (b: Buffer) => err.push(b));
  opts.onSpawn?.((s) => child.kill(s));
  const timer = opts.timeoutMs ? setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs) : undefined;
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
    child.on("close", (c, s) => resolve([c, s])),
  );
  if (timer) clearTimeout(timer);
  const ms = performance.now() - t0;
  let steps: CliRun["steps"] = [];
  if (existsSync(file)) {
    steps = readFileSync(file, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l));
    rmSync(file, { force: true });
  }
  return { args, code: code ?? -1, signal, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), ms, steps };
}

/** Fail with what the command said. */
export function mustSucceed(r: CliRun): CliRun {
  if (r.code !== 0)
    throw new Error(
      `./start.ts ${r.args.join(" ")} exited ${r.code}${r.signal ? ` (${r.signal})` : ""}: ${(r.stderr + r.stdout).trim().slice(-1500)}`,
    );
  return r;
}
