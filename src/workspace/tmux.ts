import { spawnSync } from "node:child_process";
import { execa } from "execa";
import type { Engine } from "../engine/engine.ts";
import type { LabPlan } from "../lab/plan.ts";
import { hostBanner, type PaneSpec, shellLine, workspacePanes } from "./panes.ts";

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

export const TMUX_KEYS = "Ctrl-b + arrow: move   Ctrl-b z: zoom   Ctrl-b d: detach (the lab runs on)";

/** What the host pane runs: a short banner, then the person's own shell. */
export function hostCommand(plan: LabPlan, keys: string): string {
  const banner = hostBanner(plan, keys).map((l) => `printf '%s\\n' ${shellLine([l])}`);
  return `${banner.join("; ")}; exec "\${SHELL:-/bin/bash}"`;
}

async function addPane(name: string, p: PaneSpec): Promise<void> {
  const r = await execa("tmux", ["split-window", "-t", `=${name}:0`, "-c", p.cwd, "-P", "-F", "#{pane_id}", shellLine(p.argv!)]);
  await execa("tmux", ["select-pane", "-t", r.stdout.trim(), "-T", p.title]);
  await execa("tmux", ["select-layout", "-t", `=${name}:0`, "tiled"]);
}

/** Titles of the panes of the session's first window. */
export async function paneTitles(name: string): Promise<string[]> {
  const r = await execa("tmux", ["list-panes", "-t", `=${name}:0`, "-F", "#{pane_title}"], { reject: false });
  return r.exitCode === 0 ? r.stdout.split("\n") : [];
}

/**
 * The attendee's workspace, created detached: a host shell in the recipe's folder first, then
 * one pane per interactive node running an interactive shell in that container, each titled
 * by role. An existing session is kept; a node pane closed with `exit` is opened again.
 * Returns the session name and whether it already existed.
 */
export async function createSession(engine: Engine, plan: LabPlan): Promise<{ name: string; existed: boolean; reopened: string[] }> {
  const name = sessionName(plan.lab, plan.recipe);
  const [host, ...nodes] = workspacePanes(engine.cliArgs(), plan);
  if (await sessionExists(name)) {
    const open = await paneTitles(name);
    const missing = nodes.filter((p) => !open.includes(p.title));
    for (const p of missing) await addPane(name, p);
    return { name, existed: true, reopened: missing.map((p) => p.title) };
  }
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
  for (const [opt, value] of [
    ["pane-border-status", "top"],
    ["pane-border-format", " #{pane_index}: #{pane_title} "],
    // The whole session name in the status line (tmux's default cuts it at 10 characters).
    ["status-left-length", "40"],
  ])
    await execa("tmux", ["set-option", "-t", `=${name}:`, opt!, value!]);
  await execa("tmux", ["select-pane", "-t", `=${name}:0.0`, "-T", host!.title]);
  for (const p of nodes) await addPane(name, p);
  await execa("tmux", ["select-pane", "-t", `=${name}:0.0`]);
  return { name, existed: false, reopened: [] };
}

/** Keep the session's panes on screen when their process ends, e.g. a shell in a container being recreated. */
export async function holdPanes(name: string): Promise<void> {
  await execa("tmux", ["set-option", "-w", "-t", `=${name}:0`, "remain-on-exit", "on"], { reject: false });
}

/**
 * After a lab's containers were recreated: each node pane runs its shell again in the same place
 * (one closed earlier is added again); the host pane and the live views are left as they are.
 * Returns the panes re-opened.
 */
export async function respawnNodePanes(engine: Engine, plan: LabPlan): Promise<string[]> {
  const name = sessionName(plan.lab, plan.recipe);
  const listed = await execa("tmux", ["list-panes", "-t", `=${name}:0`, "-F", "#{pane_id}\t#{pane_title}"], { reject: false });
  const ids = new Map(listed.stdout.split("\n").map((l) => l.split("\t").reverse() as [string, string]));
  const nodes = workspacePanes(engine.cliArgs(), plan).filter((p) => p.node);
  for (const p of nodes) {
    const id = ids.get(p.title);
    if (!id) await addPane(name, p);
    else await execa("tmux", ["respawn-pane", "-k", "-t", id, "-c", p.cwd, shellLine(p.argv!)]);
  }
  await execa("tmux", ["set-option", "-w", "-t", `=${name}:0`, "remain-on-exit", "off"], { reject: false });
  return nodes.map((p) => p.title);
}

/**
 * Hand the terminal to tmux (blocks until the user detaches or the session ends). Inside tmux
 * already, switch this client to the session instead (returns at once).
 */
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
