import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import type { Engine } from "../../src/engine/engine.ts";
import { ensureEngine } from "../../src/engine/setup.ts";
import { ROOT, stateDir } from "../../src/paths.ts";

/**
 * Drills are long by nature. `npm test` runs only the short ones (a few start/stop cycles and
 * the bad-input table); `npm run test:drills` (WG3_DRILLS=all) runs every drill at full size.
 */
export const ALL = process.env.WG3_DRILLS === "all";

/** Control servers the restart drills run against (like the recipe-3 e2e suite). */
export const CONTROLS = (process.env.WG3_CONTROLS ?? "headscale").split(",").filter(Boolean);

export interface Cli {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/**
 * Run ./start.ts as a person would (stdin is not a TTY, so it never attaches). `interruptAfterMs`
 * sends SIGINT (Ctrl-C) that long after the process started.
 */
export async function cli(
  args: string[],
  opts: { env?: Record<string, string>; interruptAfterMs?: number; timeoutMs?: number } = {},
): Promise<Cli> {
  const t0 = performance.now();
  const child = spawn(join(ROOT, "start.ts"), args, {
    cwd: ROOT,
    env: { ...process.env, WG3_VERBOSE: undefined, ...opts.env } as NodeJS.ProcessEnv,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (b: Buffer) => {
    stdout += b;
  });
  child.stderr.on("data", (b: Buffer) => {
    stderr += b;
  });
  const sigint = opts.interruptAfterMs !== undefined ? setTimeout(() => child.kill("SIGINT"), opts.interruptAfterMs) : undefined;
  const kill = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 300_000);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
    child.on("close", (c, s) => resolve([c, s])),
  );
  clearTimeout(sigint);
  clearTimeout(kill);
  return { code, signal, stdout, stderr, ms: performance.now() - t0 };
}

export function engine(): Promise<Engine> {
  return ensureEngine({ allowSetup: false });
}

export interface Leftovers {
  containers: string[];
  networks: string[];
  volumes: string[];
  sessions: string[];
  planDirs: string[];
}

/** Everything with our labels (optionally one lab/recipe), our tmux sessions and plan directories. */
export async function ours(e: Engine, match: { lab?: string; recipe?: string } = {}): Promise<Leftovers> {
  const containers = (await e.listContainers(match)).map((c) => c.name).sort();
  const networks = (await e.listNetworks(match)).map((n) => n.name).sort();
  const volumes = (await e.listVolumes(match)).map((v) => v.name).sort();
  const r = await execa("tmux", ["list-sessions", "-F", "#{session_name}"], { reject: false });
  const sessionOf = (lab: string, recipe: string) => (lab === "default" ? `wg3-${recipe}` : `wg3-${lab}-${recipe}`);
  const sessions = (r.exitCode === 0 ? r.stdout.split("\n") : [])
    .filter((s) => s.startsWith("wg3-"))
    .filter((s) => !match.recipe || s === sessionOf(match.lab ?? "default", match.recipe))
    .sort();
  const planDirs =
    match.recipe && existsSync(join(stateDir(), "labs", match.lab ?? "default", match.recipe))
      ? [join(stateDir(), "labs", match.lab ?? "default", match.recipe)]
      : [];
  return { containers, networks, volumes, sessions, planDirs };
}

export const NOTHING: Leftovers = { containers: [], networks: [], volumes: [], sessions: [], planDirs: [] };

/** Time a recovery: poll `probe` until it holds, with a deadline; returns seconds. */
export async function recoveryTime(what: string, probe: () => Promise<boolean>, timeoutMs = 120_000): Promise<number> {
  const t0 = performance.now();
  let last: unknown;
  let delay = 100;
  while (true) {
    try {
      if (await probe()) return (performance.now() - t0) / 1000;
      last = false;
    } catch (e) {
      last = (e as Error).message;
    }
    if (performance.now() - t0 > timeoutMs)
      throw new Error(`${what}: not recovered after ${timeoutMs / 1000} s; last seen: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 500);
  }
}

/** One line for the report (vitest prints it), so each drill says how long recovery took. */
export function report(line: string): void {
  console.info(`drill: ${line}`);
}
