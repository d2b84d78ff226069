import { join } from "node:path";
import type { Engine } from "../engine/engine.ts";
import { UserError } from "../errors.ts";
import { status } from "../lab/lifecycle.ts";
import { type LabPlan, labStateDir } from "../lab/plan.ts";
import { hostBanner, labFlag, shellLine, workspacePanes } from "./panes.ts";
import {
  attach,
  createSession,
  hasTmux,
  holdPanes,
  killSession,
  killSessionNamed,
  listSessions,
  respawnNodePanes,
  sessionExists,
  sessionName,
} from "./tmux.ts";
import {
  hasZellij,
  killZellijSession,
  runZellij,
  writeLayout,
  zellijCommand,
  zellijLayout,
  zellijSessionExists,
  zellijSessions,
} from "./zellij.ts";

export const MUXES = ["tmux", "zellij"] as const;
export type Mux = (typeof MUXES)[number];

export interface MuxChoice {
  mux?: Mux;
  /** Why there is no workspace, or why the other multiplexer was picked. */
  note?: string;
}

/**
 * Which terminal multiplexer opens the workspace. `--mux` wins when that one is installed;
 * otherwise tmux, then zellij. Neither: no workspace, and the note says what to do instead.
 */
export function pickMux(requested: string | undefined, have: Record<Mux, boolean>): MuxChoice {
  if (requested !== undefined && !(MUXES as readonly string[]).includes(requested))
    throw new UserError(`--mux must be tmux or zellij, not "${requested}".`, 2);
  const install = { tmux: "apt-get install tmux", zellij: "see https://zellij.dev/documentation/installation" };
  if (requested) {
    const m = requested as Mux;
    if (have[m]) return { mux: m };
    return { note: `--mux ${m}: ${m} is not installed (${install[m]}).` };
  }
  if (have.tmux) return { mux: "tmux" };
  if (have.zellij) return { mux: "zellij", note: "tmux is not installed; using zellij." };
  return { note: "Neither tmux nor zellij is installed (apt-get install tmux), so there is no workspace." };
}

export async function chooseMux(requested: string | undefined): Promise<MuxChoice> {
  if (requested !== undefined) pickMux(requested, { tmux: false, zellij: false }); // a bad value fails before anything runs
  const [tmux, zellij] = await Promise.all([hasTmux(), hasZellij()]);
  return pickMux(requested, { tmux, zellij });
}

/** Plain commands that open each node's shell, for when there is no workspace. */
export function execHints(engine: Engine, plan: LabPlan): string[] {
  return workspacePanes(engine.cliArgs(), plan)
    .filter((p) => p.argv)
    .map((p) => `  ${shellLine(p.argv!).padEnd(48)} # ${p.title}`);
}

export const ZELLIJ_KEYS = "Alt + arrow: move   Ctrl-p f: full screen   Ctrl-o d: detach (the lab runs on)";

export function zellijLayoutFile(plan: LabPlan): string {
  return join(labStateDir(plan.lab, plan.recipe), "workspace.kdl");
}

export interface OpenOptions {
  choice: MuxChoice;
  /** Hand the terminal to the multiplexer (a person at a TTY, no --no-attach). */
  attach: boolean;
  say: (line: string) => void;
}

/**
 * Open the lab's workspace. tmux: the session is always created (detached) and attached only
 * when asked, so `--no-attach` leaves a session to attach to later. zellij: it cannot create a
 * session without a terminal, so the layout is written and the command to open it printed.
 */
export async function openWorkspace(engine: Engine, plan: LabPlan, o: OpenOptions): Promise<void> {
  const { choice, say } = o;
  const again = `./start.ts ${plan.recipe}${labFlag(plan)}`;
  const stop = `./start.ts stop ${plan.recipe}${labFlag(plan)}`;
  if (choice.note) say(choice.note);
  if (choice.mux === "tmux") {
    const s = await createSession(engine, plan);
    if (s.reopened.length) say(`Re-opened the closed pane${s.reopened.length > 1 ? "s" : ""}: ${s.reopened.join(", ")}.`);
    if (!o.attach) {
      say(`Workspace: tmux session ${s.name}${s.existed ? " (already open)" : ""}. Open it with: tmux attach -t ${s.name}`);
      return;
    }
    attach(s.name);
    if (process.env.TMUX) say(`Switched this tmux client to ${s.name}; Ctrl-b ( switches back.`);
    else if (await sessionExists(s.name)) say(`Left the workspace; the lab keeps running. ${again} re-opens it, ${stop} ends the lab.`);
    else say(await afterEnd(engine, plan, again, stop));
    return;
  }
  if (choice.mux === "zellij") {
    const name = sessionName(plan.lab, plan.recipe);
    const file = zellijLayoutFile(plan);
    const hostArgv = [
      "sh",
      "-c",
      `${hostBanner(plan, ZELLIJ_KEYS)
        .map((l) => `printf '%s\\n' ${shellLine([l])}`)
        .join("; ")}; exec "\${SHELL:-/bin/bash}"`,
    ];
    writeLayout(file, zellijLayout(plan.recipe, workspacePanes(engine.cliArgs(), plan), hostArgv));
    const exists = await zellijSessionExists(name);
    const argv = zellijCommand(name, file, exists);
    if (!o.attach || process.env.ZELLIJ !== undefined) {
      if (process.env.ZELLIJ !== undefined && o.attach) say("Already inside zellij, which does not nest sessions.");
      say(`Workspace: zellij session ${name}. Open it with: ${shellLine(argv)}`);
      return;
    }
    runZellij(argv);
    if (await zellijSessionExists(name)) say(`Left the workspace; the lab keeps running. ${again} re-opens it, ${stop} ends the lab.`);
    else say(await afterEnd(engine, plan, again, stop));
    return;
  }
  say("Open a shell in each node, one terminal each:");
  for (const l of execHints(engine, plan)) say(l);
  say(`(or ./start.ts shell ${plan.recipe} <node>${labFlag(plan)})`);
}

/** Is the lab's workspace open, in either multiplexer? */
export async function workspaceOpen(lab: string, recipe: string): Promise<boolean> {
  const [tmux, zellij] = await Promise.all([hasTmux(), hasZellij()]);
  const name = sessionName(lab, recipe);
  return (tmux && (await sessionExists(name))) || (zellij && (await zellijSessionExists(name)));
}

/**
 * Before a lab's containers are recreated: the multiplexer holding its workspace, if any; tmux
 * then keeps the node panes in place while their containers go.
 */
export async function holdWorkspace(lab: string, recipe: string): Promise<Mux | undefined> {
  const [tmux, zellij] = await Promise.all([hasTmux(), hasZellij()]);
  const name = sessionName(lab, recipe);
  if (tmux && (await sessionExists(name))) {
    await holdPanes(name);
    return "tmux";
  }
  return zellij && (await zellijSessionExists(name)) ? "zellij" : undefined;
}

/** After the recreation: the node panes' shells in the new containers, or what to do for them. */
export async function reopenNodePanes(engine: Engine, plan: LabPlan, mux: Mux | undefined): Promise<string | undefined> {
  const name = sessionName(plan.lab, plan.recipe);
  if (mux === "tmux") {
    const panes = await respawnNodePanes(engine, plan);
    return panes.length ? `Workspace ${name}: the shells of ${panes.length} node panes run in the new containers.` : undefined;
  }
  if (mux === "zellij")
    return `Workspace ${name}: the node panes' shells ended with their containers; press Enter in each to open it again.`;
  return undefined;
}

/** What to say when the workspace session is gone: was the lab stopped with it? */
async function afterEnd(engine: Engine, plan: LabPlan, again: string, stop: string): Promise<string> {
  const running = (await status(engine, plan.recipe, plan.lab).catch(() => []))[0];
  return running
    ? `The workspace closed; the lab still runs. ${again} opens a new one, ${stop} ends the lab.`
    : `The workspace closed and ${plan.recipe} is stopped.`;
}

/** End the lab's workspace, whichever multiplexer holds it. */
export async function closeWorkspace(lab: string, recipe: string): Promise<boolean> {
  const [tmux, zellij] = await Promise.all([hasTmux(), hasZellij()]);
  const t = tmux ? await killSession(lab, recipe) : false;
  const z = zellij ? await killZellijSession(sessionName(lab, recipe)) : false;
  return t || z;
}

/** End every workspace of this harness (`clean`). */
export async function closeAllWorkspaces(): Promise<number> {
  const [tmux, zellij] = await Promise.all([hasTmux(), hasZellij()]);
  let n = 0;
  if (tmux) for (const s of await listSessions()) if (await killSessionNamed(s)) n++;
  if (zellij) for (const s of (await zellijSessions()).filter((x) => x.startsWith("wg3-"))) if (await killZellijSession(s)) n++;
  return n;
}
