import { spawnSync } from "node:child_process";
import { execa } from "execa";
import type { Engine } from "../engine/engine.ts";
import type { LabPlan } from "../lab/plan.ts";
import { hostBanner, shellLine, workspacePanes } from "./panes.ts";

/** tmux session name of a lab: one per lab and recipe. */
export function sessionName(lab: string, recipe: string): string {
  return lab === "default" ? `wg3-${recipe}` : `wg3-${lab}-${recipe}`;
}

export async function hasTmux(): Promise<boolean> {
  return (await execa("tmux", ["-V"], { reject: false })).exitCode === 0;
}

export async function sessionExists(name: string): Promise<boolean> {
  return (await execa("tmux", ["has-session", "-t", `=${name}`], { reject: false })).exitCode === 0;
}

export const TMUX_KEYS = "Panes: Ctrl-b then an arrow key moves, Ctrl-b z zooms one pane, Ctrl-b d detaches (the lab keeps running).";

/** What the host pane runs: a short banner, then the person's own shell. */
export function hostCommand(plan: LabPlan, keys: string): string {
  const banner = hostBanner(plan, keys).map((l) => `printf '%s\\n' ${shellLine([l])}`);
  return `${banner.join("; ")}; exec "\${SHELL:-/bin/bash}"`;
}

/**
 * The attendee's workspace, created detached: a host shell in the recipe's folder first, then
 * one pane per interactive node running an interactive shell in that container, each titled
 * by role. Returns the session name and whether it already existed (then it is left as is).
 */
export async function createSession(engine: Engine, plan: LabPlan): Promise<{ name: string; existed: boolean }> {
  const name = sessionName(plan.lab, plan.recipe);
  if (await sessionExists(name)) return { name, existed: true };
  const [host, ...nodes] = workspacePanes(engine.cliArgs(), plan);
  const env = engine.kind === "docker" ? ["-e", `DOCKER_HOST=${engine.dockerHost}`] : [];
  await execa("tmux", [
    "new-session",
    "-d",
    "-s",
    name,
    "-n",
    plan.recipe,
    "-c",
    host!.cwd,
    "-x",
    "220",
    "-y",
    "60",
    ...env,
    hostCommand(plan, TMUX_KEYS),
  ]);
  await execa("tmux", ["set-option", "-t", name, "pane-border-status", "top"]);
  await execa("tmux", ["set-option", "-t", name, "pane-border-format", " #{pane_index}: #{pane_title} "]);
  await execa("tmux", ["select-pane", "-t", `${name}:0.0`, "-T", host!.title]);
  for (const p of nodes) {
    const r = await execa("tmux", ["split-window", "-t", `${name}:0`, "-c", p.cwd, "-P", "-F", "#{pane_id}", shellLine(p.argv!)]);
    await execa("tmux", ["select-pane", "-t", r.stdout.trim(), "-T", p.title]);
    await execa("tmux", ["select-layout", "-t", `${name}:0`, "tiled"]);
  }
  await execa("tmux", ["select-pane", "-t", `${name}:0.0`]);
  return { name, existed: false };
}

/** Hand the terminal to tmux (blocks until the user detaches or the session ends). */
export function attach(name: string): number {
  const inTmux = Boolean(process.env.TMUX);
  const r = spawnSync("tmux", inTmux ? ["switch-client", "-t", `=${name}`] : ["attach-session", "-t", `=${name}`], {
    stdio: "inherit",
  });
  return r.status ?? 0;
}

export async function killSession(lab: string, recipe: string): Promise<boolean> {
  return killSessionNamed(sessionName(lab, recipe));
}

export async function killSessionNamed(name: string): Promise<boolean> {
  if (!(await sessionExists(name))) return false;
  await execa("tmux", ["kill-session", "-t", `=${name}`], { reject: false });
  return true;
}

export async function listSessions(): Promise<string[]> {
  const r = await execa("tmux", ["list-sessions", "-F", "#{session_name}"], { reject: false });
  return r.exitCode === 0 ? r.stdout.split("\n").filter((s) => s.startsWith("wg3-")) : [];
}
