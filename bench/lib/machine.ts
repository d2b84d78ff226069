import { execFileSync } from "node:child_process";
import { cpus, release, totalmem } from "node:os";
import { ensureEngine } from "../../src/engine/ensure.ts";
import { ROOT } from "../../src/paths.ts";
import { versions } from "../../src/versions.ts";
import type { Machine } from "./types.ts";

function git(args: string[]): string {
  try {
    return execFileSync("git", args, { cwd: ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return "";
  }
}

/** What the numbers were measured on: hardware, kernel, engine, pinned versions, commit. */
export async function machine(): Promise<Machine> {
  let engine = "none";
  try {
    const e = await ensureEngine({ allowSetup: false });
    engine = `${e.kind} ${e.version}`;
  } catch {}
  return {
    cores: cpus().length,
    cpuModel: cpus()[0]?.model.trim() ?? "?",
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: release(),
    engine,
    node: process.version,
    versions: { tailscale: versions.tailscale, headscale: versions.headscale, debian: versions.debian.baseImage },
    date: new Date().toISOString(),
    gitCommit: git(["rev-parse", "--short=12", "HEAD"]) || "?",
    gitDirty: git(["status", "--porcelain", "--untracked-files=no"]) !== "",
  };
}
