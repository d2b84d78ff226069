import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";

/** The engine lock every engine user on this machine holds while it starts containers. */
export const ENGINE_LOCK = "/tmp/wg3-e2e.lock";

function cmdline(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
  } catch {
    return [];
  }
}

function parent(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  } catch {
    return 0;
  }
}

/** Is one of our ancestors `flock /tmp/wg3-e2e.lock ...` (so we already hold the lock)? */
export function lockHeldByAncestor(): boolean {
  if (process.env.WG3_ENGINE_LOCK_HELD === "1") return true;
  for (let pid = process.ppid; pid > 1; pid = parent(pid)) {
    const argv = cmdline(pid);
    if (argv[0]?.endsWith("flock") && argv.includes(ENGINE_LOCK)) return true;
  }
  return false;
}

/**
 * Run this very command again under `flock ENGINE_LOCK` unless the lock is already ours.
 * Returns undefined when the lock is held (go on), or the child's exit code (exit with it).
 */
export function reexecUnderLock(): number | undefined {
  if (lockHeldByAncestor()) return undefined;
  process.stderr.write(`waiting for the engine lock ${ENGINE_LOCK} (other engine users finish first)...\n`);
  const r = spawnSync("flock", [ENGINE_LOCK, process.execPath, ...process.execArgv, ...process.argv.slice(1)], {
    stdio: "inherit",
    env: { ...process.env, WG3_ENGINE_LOCK_HELD: "1" },
  });
  return r.status ?? 1;
}
