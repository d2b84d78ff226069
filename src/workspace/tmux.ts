import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { execa } from "execa";
import type { Engine } from "../engine/engine.ts";
import type { LabPlan } from "../lab/plan.ts";
import { recipesDir } from "../paths.ts";

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

function engineExec(engine: Engine, container: string): string {
  return [...engine.cliArgs(), "exec", "-it", container, "bash"].join(" ");
}

/**
 * The attendee's workspace: a host shell in the recipe's folder first, then one pane per
 * interactive node running an interactive shell in that container, each titled by role.
 */
export async function createSession(engine: Engine, plan: LabPlan): Promise<string> {
  const name = sessionName(plan.lab, plan.recipe);
  if (await sessionExists(name)) return name;
  const cwd = join(recipesDir, plan.recipe);
  const env = engine.kind === "docker" ? ["-e", `DOCKER_HOST=${engine.dockerHost}`] : [];
  await execa("tmux", ["new-session", "-d", "-s", name, "-n", plan.recipe, "-c", cwd, "-x", "220", "-y", "60", ...env]);
  await execa("tmux", ["set-option", "-t", name, "pane-border-status", "top"]);
  await execa("tmux", ["set-option", "-t", name, "pane-border-format", " #{pane_index}: #{pane_title} "]);
  await execa("tmux", ["select-pane", "-t", `${name}:0.0`, "-T", "host"]);
  for (const node of Object.values(plan.nodes).filter((n) => n.interactive)) {
    const r = await execa("tmux", [
      "split-window",
      "-t",
      `${name}:0`,
      "-c",
      cwd,
      "-P",
      "-F",
      "#{pane_id}",
      engineExec(engine, node.container),
    ]);
    await execa("tmux", ["select-pane", "-t", r.stdout.trim(), "-T", `${node.role} (${node.container})`]);
    await execa("tmux", ["select-layout", "-t", `${name}:0`, "tiled"]);
  }
  await execa("tmux", ["select-pane", "-t", `${name}:0.0`]);
  return name;
}

/** Hand the terminal to tmux (blocks until the user detaches or the session ends). */
export function attach(name: string): number {
  const inTmux = Boolean(process.env.TMUX);
  const r = spawnSync("tmux", inTmux ? ["switch-client", "-t", name] : ["attach-session", "-t", name], {
    stdio: "inherit",
  });
  return r.status ?? 0;
}

export async function killSession(lab: string, recipe: string): Promise<boolean> {
  const name = sessionName(lab, recipe);
  if (!(await sessionExists(name))) return false;
  await execa("tmux", ["kill-session", "-t", `=${name}`], { reject: false });
  return true;
}

export async function listSessions(): Promise<string[]> {
  const r = await execa("tmux", ["list-sessions", "-F", "#{session_name}"], { reject: false });
  return r.exitCode === 0 ? r.stdout.split("\n").filter((s) => s.startsWith("wg3-")) : [];
}
