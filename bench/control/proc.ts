import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

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
