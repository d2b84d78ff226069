import { existsSync } from "node:fs";
import { join, relative } from "node:path";
import type { LabPlan } from "../lab/plan.ts";
import { ROOT, recipesDir } from "../paths.ts";
import { loadRecipe } from "../recipe/load.ts";

/** One terminal pane of the workspace. `argv` absent: the person's own shell on the host. */
export interface PaneSpec {
  title: string;
  cwd: string;
  argv?: string[];
  /** The node the pane is a shell in (absent for the host pane). */
  node?: string;
}

/** The attendee's panes: the host shell in the recipe's folder first, then one per interactive node. */
export function workspacePanes(cli: string[], plan: LabPlan): PaneSpec[] {
  const cwd = join(recipesDir, plan.recipe);
  const panes: PaneSpec[] = [{ title: "host", cwd }];
  for (const n of Object.values(plan.nodes)) {
    if (!n.interactive) continue;
    panes.push({ title: `${n.role} (${n.container})`, cwd, argv: [...cli, "exec", "-it", n.container, "bash"], node: n.key });
  }
  // The recipe's live views (paths --watch): ./start.ts on this lab, like the person would type it.
  const lab = plan.lab === "default" ? [] : ["--lab", plan.lab];
  for (const p of loadRecipe(plan.recipe).panes) {
    const [command, ...flags] = p.command.split(" ");
    panes.push({ title: p.title, cwd, argv: [join(ROOT, "start.ts"), command!, plan.recipe, ...flags, ...lab] });
  }
  return panes;
}

/** Quote one word for a POSIX shell. */
export function shq(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

export function shellLine(argv: string[]): string {
  return argv.map(shq).join(" ");
}

/** The extra words every ./start.ts command of this lab needs (`--lab NAME` outside the default lab). */
export function labFlag(plan: Pick<LabPlan, "lab">): string {
  return plan.lab === "default" ? "" : ` --lab ${plan.lab}`;
}

/**
 * What the host pane prints before its shell: where it is, and the commands that work from
 * there verbatim (start.ts is two folders up from recipes/<recipe>/).
 */
export function hostBanner(plan: LabPlan, keys: string): string[] {
  const here = relative(ROOT, join(recipesDir, plan.recipe));
  const st = relative(join(recipesDir, plan.recipe), join(ROOT, "start.ts"));
  const lab = labFlag(plan);
  const solution = existsSync(join(ROOT, here, "solution")) ? " and solution/" : "";
  return [
    `This pane is your host, in ${here}/ (the config templates${solution}).`,
    `Guide: labs/${plan.recipe}.md   Progress: ${st} check ${plan.recipe}${lab}`,
    keys,
  ];
}
