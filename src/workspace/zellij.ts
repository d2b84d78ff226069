import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { execa } from "execa";
import type { PaneSpec } from "./panes.ts";

/** A KDL string literal. */
function kdl(s: string): string {
  return `"${s.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`;
}

/**
 * The workshop's Zellij workspace as a KDL layout: one tab named after the recipe, the host
 * pane (`panes[0]`, the person's shell in its cwd) on the left, and the node panes stacked on
 * the right, each running its command (the engine's `exec -it <container> bash`) and named by
 * role. `hostArgv`, when given, is what the host pane runs instead of a bare shell (a banner,
 * then the shell). Pure: the same panes give the same text.
 */
export function zellijLayout(tab: string, panes: PaneSpec[], hostArgv?: string[]): string {
  const [host, ...nodes] = panes;
  if (!host) throw new Error("a workspace needs at least the host pane");
  const lines = [
    "layout {",
    "    default_tab_template {",
    "        pane size=1 borderless=true {",
    `            plugin location="zellij:tab-bar"`,
    "        }",
    "        children",
    "        pane size=2 borderless=true {",
    `            plugin location="zellij:status-bar"`,
    "        }",
    "    }",
    `    tab name=${kdl(tab)} focus=true split_direction="vertical" {`,
  ];
  const pane = (p: PaneSpec, indent: string, argv: string[] | undefined, extra = "") => {
    const [cmd, ...args] = argv ?? [];
    const head = `${indent}pane name=${kdl(p.title)} cwd=${kdl(p.cwd)}${cmd ? ` command=${kdl(cmd)}` : ""}${extra}`;
    if (!args.length) return [head];
    return [`${head} {`, `${indent}    args ${args.map(kdl).join(" ")}`, `${indent}}`];
  };
  lines.push(...pane(host, "        ", hostArgv ?? host.argv, " focus=true"));
  if (nodes.length) {
    lines.push(`        pane split_direction="horizontal" {`);
    for (const n of nodes) lines.push(...pane(n, "            ", n.argv));
    lines.push("        }");
  }
  lines.push("    }", "}");
  return `${lines.join("\n")}\n`;
}

export async function hasZellij(): Promise<boolean> {
  return (await execa("zellij", ["--version"], { reject: false })).exitCode === 0;
}

const ANSI = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, "g");
const stripAnsi = (s: string) => s.replace(ANSI, "");

/** Names of the zellij sessions that exist (running or resurrectable). */
export async function zellijSessions(): Promise<string[]> {
  const r = await execa("zellij", ["list-sessions"], { reject: false, env: { NO_COLOR: "1" } });
  if (r.exitCode !== 0) return [];
  // One session per line, its name first; older versions colour the name, newer ones add "[Created ...]".
  return r.stdout
    .split("\n")
    .map((l) => stripAnsi(l).trim().split(/\s+/)[0] ?? "")
    .filter(Boolean);
}

export async function zellijSessionExists(name: string): Promise<boolean> {
  return (await zellijSessions()).includes(name);
}

export function writeLayout(file: string, text: string): void {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, text);
}

/** The command that opens the workspace: attach when the session exists, else create it from the layout. */
export function zellijCommand(name: string, layoutFile: string, exists: boolean): string[] {
  return exists ? ["zellij", "attach", name] : ["zellij", "--layout", layoutFile, "--session", name];
}

/** Hand the terminal to zellij (blocks until the person detaches or quits). */
export function runZellij(argv: string[]): number {
  const [cmd, ...args] = argv;
  return spawnSync(cmd!, args, { stdio: "inherit" }).status ?? 0;
}

export async function killZellijSession(name: string): Promise<boolean> {
  if (!(await zellijSessionExists(name))) return false;
  await execa("zellij", ["kill-session", name], { reject: false });
  // Zellij >= 0.39 keeps exited sessions for resurrection; a stopped lab has nothing to resurrect.
  await execa("zellij", ["delete-session", name], { reject: false });
  return true;
}
