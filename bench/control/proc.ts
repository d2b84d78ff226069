import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";

let clkTck: number | undefined;
function ticksPerSecond(): number {
  if (clkTck === undefined) {
    try {
      clkTck = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

/** CPU seconds (user + system) a process has used so far, from /proc/PID/stat. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name (which may contain spaces) start at field 3 (state).
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const utime = Number(f[11]);
  const stime = Number(f[12]);
  return (utime + stime) / ticksPerSecond();
}

/** Peak and current resident memory of a process in bytes (VmHWM, VmRSS of /proc/PID/status). */
export function memory(pid: number): { peakRss: number; rss: number } {
  const s = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(s)?.[1] ?? 0) * 1024;
  return { peakRss: kb("VmHWM"), rss: kb("VmRSS") };
}

/**
 * Separate cores for the server and the load generator (taskset), so neither measures the
 * other's work: the server on CPU 0, the load generator on the rest. Undefined on one CPU or
 * without taskset (util-linux): then both share, and the results say so.
 */
export function cpuSplit(): { server: string; loadgen: string } | undefined {
  const n = availableParallelism();
  if (n < 2) return undefined;
  try {
    execFileSync("taskset", ["-p", String(process.pid)], { stdio: "ignore" });
  } catch {
    return undefined;
  }
  return { server: "0", loadgen: n === 2 ? "1" : `1-${n - 1}` };
}

/** Pin every thread of this process to `cpus` (a taskset list like "1-3"). */
export function pinSelf(cpus: string): void {
  execFileSync("taskset", ["-a", "-cp", cpus, String(process.pid)], { stdio: "ignore" });
}

/** The command line that runs `argv` on `cpus`, or `argv` as is. */
export function onCpus(cpus: string | undefined, argv: readonly string[]): string[] {
  return cpus ? ["taskset", "-c", cpus, ...argv] : [...argv];
}
