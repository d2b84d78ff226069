import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT } from "../../src/paths.ts";
import { TIMEOUT } from "./timeouts.ts";

export const START_TS = join(ROOT, "start.ts");
export const TSX_LOADER = join(ROOT, "node_modules", "tsx", "dist", "loader.mjs");

export interface StartTsOptions {
  /** Added to this process's environment (WG3_VERBOSE is left out unless given here). */
  env?: Record<string, string | undefined>;
  /** Start from `env` alone instead of this process's environment. */
  cleanEnv?: boolean;
  /** SIGKILL after this long (Infinity: never). Default TIMEOUT.cli. */
  timeoutMs?: number;
  /** Send SIGINT (Ctrl-C) this long after the start. */
  interruptAfterMs?: number;
  /** Collect the progress steps the command finished (through WG3_TIMINGS_FILE) into `steps`. */
  timings?: boolean;
  /** Close the reading end of stdout at once, as when `| head` has already exited. */
  closeStdout?: boolean;
  /** Run start.ts through node and the tsx loader directly (the sh wrapper needs more of PATH than some tests give). */
  viaNode?: boolean;
  /** Prefix the command with these words (e.g. ["unshare", "-n"]); implies viaNode. */
  wrap?: string[];
  /** Run as this uid (and gid). */
  uid?: number;
}

export interface StartTsRun {
  args: string[];
  /** Exit code; null when a signal ended it. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** stdout and stderr interleaved as they arrived. */
  all: string;
  /** From spawn to the end of its output. */
  ms: number;
  /** Progress steps it finished (title, ms, ok, end epoch ms), with `timings: true`. */
  steps: { title: string; ms: number; ok: boolean; end: number }[];
}

export interface RunningStartTs {
  child: ChildProcess;
  /** stdout and stderr so far, interleaved. */
  output(): string;
  /** Resolves when the process exits (its output may still be arriving). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves when the process has exited and closed its output. */
  done: Promise<StartTsRun>;
}

/**
 * Start `./start.ts ARGS` as a person would (stdin not a TTY, so it never attaches), from the
 * repository root, and watch it. The one way tests and benchmarks run the CLI.
 */
export function spawnStartTs(args: string[], opts: StartTsOptions = {}): RunningStartTs {
  const timingsFile = join(tmpdir(), `wg3-timings-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}.jsonl`);
  const env: Record<string, string | undefined> = { ...(opts.cleanEnv ? {} : process.env), WG3_VERBOSE: undefined, ...opts.env };
  if (opts.timings) env.WG3_TIMINGS_FILE = timingsFile;
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
  const direct = opts.viaNode || opts.wrap;
  const cmd = direct
    ? [...(opts.wrap ?? []), process.execPath, "--no-warnings=ExperimentalWarning", "--import", TSX_LOADER, START_TS, ...args]
    : [START_TS, ...args];
  const t0 = performance.now();
  const child = spawn(cmd[0]!, cmd.slice(1), {
    cwd: ROOT,
    env: env as NodeJS.ProcessEnv,
    stdio: ["ignore", "pipe", "pipe"],
    uid: opts.uid,
    gid: opts.uid,
  });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const all: Buffer[] = [];
  if (opts.closeStdout) child.stdout.destroy();
  else
    child.stdout.on("data", (b: Buffer) => {
      out.push(b);
      all.push(b);
    });
  child.stderr.on("data", (b: Buffer) => {
    err.push(b);
    all.push(b);
  });
  const sigint = opts.interruptAfterMs !== undefined ? setTimeout(() => child.kill("SIGINT"), opts.interruptAfterMs) : undefined;
  const limit = opts.timeoutMs ?? TIMEOUT.cli;
  const kill = Number.isFinite(limit) ? setTimeout(() => child.kill("SIGKILL"), limit) : undefined;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => resolve({ code, signal })),
  );
  const done = new Promise<StartTsRun>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(sigint);
      clearTimeout(kill);
      const ms = performance.now() - t0;
      let steps: StartTsRun["steps"] = [];
      if (existsSync(timingsFile)) {
        steps = readFileSync(timingsFile, "utf8")
          .split("\n")
          .filter(Boolean)
          .map((l) => JSON.parse(l));
        rmSync(timingsFile, { force: true });
      }
      const text = (b: Buffer[]) => Buffer.concat(b).toString();
      resolve({ args, code, signal, stdout: text(out), stderr: text(err), all: text(all), ms, steps });
    });
  });
  void done.catch(() => {}); // a failed spawn rejects `done` for whoever awaits it, and only then
  return { child, output: () => Buffer.concat(all).toString(), exited, done };
}

/** Run `./start.ts ARGS` to its end (see spawnStartTs). */
export function startTs(args: string[], opts: StartTsOptions = {}): Promise<StartTsRun> {
  return spawnStartTs(args, opts).done;
}

/** The run, or an error with what the command said. */
export function mustSucceed(r: StartTsRun): StartTsRun {
  if (r.code !== 0)
    throw new Error(
      `./start.ts ${r.args.join(" ")} exited ${r.code}${r.signal ? ` (${r.signal})` : ""}: ${(r.stderr + r.stdout).trim().slice(-1500)}`,
    );
  return r;
}
