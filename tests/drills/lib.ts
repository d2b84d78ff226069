import { existsSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import type { Engine } from "../../src/engine/engine.ts";
import { ensureEngine } from "../../src/engine/ensure.ts";
import { stateDir } from "../../src/paths.ts";
import { timeUntil } from "../support/eventually.ts";
import { TIMEOUT } from "../support/timeouts.ts";

/**
 * Drills are long by nature. `npm test` runs only the short ones (a few start/stop cycles and
 * the bad-input table); `npm run test:drills` (WG3_DRILLS=all) runs every drill at full size.
 */
export const ALL = process.env.WG3_DRILLS === "all";

/** Control servers the restart drills run against (like the recipe-3 e2e suite). */
export const CONTROLS = (process.env.WG3_CONTROLS ?? "headscale").split(",").filter(Boolean);

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
  // The recipe's plan folder and the lab's folder above it (gone once the lab's last recipe stops).
  const labDir = join(stateDir(), "labs", match.lab ?? "default");
  const planDirs = match.recipe ? [join(labDir, match.recipe), labDir].filter((d) => existsSync(d)) : [];
  return { containers, networks, volumes, sessions, planDirs };
}

export const NOTHING: Leftovers = { containers: [], networks: [], volumes: [], sessions: [], planDirs: [] };

/** Time a recovery: how long until `probe` holds, in seconds (polled every 500 ms at most), with a deadline. */
export function recoveryTime(what: string, probe: () => Promise<boolean>, timeout: number = TIMEOUT.recovery): Promise<number> {
  return timeUntil(what, probe, { timeout, interval: 500 });
}

/** One line for the report (vitest prints it), so each drill says how long recovery took. */
export function report(line: string): void {
  console.info(`drill: ${line}`);
}
