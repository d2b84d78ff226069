import { spawn } from "node:child_process";
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
 * Resolves undefined when the lock is held (go on), or the child's exit code (exit with it).
 */
export async function reexecUnderLock(): Promise<number | undefined> {
  if (lockHeldByAncestor()) return undefined;
  process.stderr.write(`waiting for the engine lock ${ENGINE_LOCK} (other engine users finish first)...\n`);
  // Ctrl-C reaches the child too, which cleans up and exits: wait for it rather than die first.
  const ignore = () => {};
  process.on("SIGINT", ignore);
  process.on("SIGTERM", ignore);
  const child = spawn("flock", [ENGINE_LOCK, process.execPath, ...process.execArgv, ...process.argv.slice(1)], {
    stdio: "inherit",
    env: { ...process.env, WG3_ENGINE_LOCK_HELD: "1" },
  });
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
    child.on("close", (c, s) => resolve([c, s])),
  );
  return code ?? (signal === "SIGINT" ? 130 : 1);
}
