import { UserError } from "../../errors.ts";
import { up } from "../../lab/lifecycle.ts";
import { DEFAULT_LAB } from "../../lab/plan.ts";
import { listRecipes, loadRecipe } from "../../recipe/load.ts";
import { chooseMux, openWorkspace } from "../../workspace/mux.ts";
import type { FlagSpec, Parsed } from "../args.ts";
import { type Command, GLOBAL, LAB, labOf, table } from "../command.ts";

export const startCommand: Command = {
  name: "start",
  usage: "<recipe> [--no-attach] [--mux tmux|zellij] [--lab NAME] [recipe options]",
  summary: "start a recipe's lab and open its workspace",
  details:
    "Builds what is missing, creates the networks and containers, runs the recipe's setup and waits\n" +
    "until it is really up. Then opens the workspace, a tmux session wg3-<recipe>: a host shell in\n" +
    "recipes/<recipe>/, and one pane per interactive container. Starting a running lab only re-attaches.\n" +
    "With --no-attach (or without a terminal) the tmux session is still created: tmux attach -t wg3-<recipe>.\n" +
    "Zellij is used when tmux is missing or with --mux zellij; with neither, the shell commands are printed.\n" +
    "A recipe's options (options: in its recipe.yaml) are flags too: ./start.ts --help <recipe> lists them.",
  flags: [
    { name: "no-attach", help: "do not attach to the workspace (CI, scripts); tmux still creates it" },
    { name: "mux", value: "tmux|zellij", help: "which terminal multiplexer opens the workspace (default: tmux, else zellij)" },
    LAB,
    { name: "yes", help: "install the engine without asking if none is found" },
  ],
  async run(p, ctx) {
    const recipe = p.positionals[0]!;
    const lab = labOf(p);
    const mux = await chooseMux(p.flags.mux as string | undefined);
    const t0 = Date.now();
    const r = await up(recipe, {
      lab,
      options: optionValues(p),
      progress: ctx.progress,
      signal: ctx.signal,
      yes: Boolean(p.flags.yes),
    });
    const labText = lab === DEFAULT_LAB ? "" : ` --lab ${lab}`;
    if (r.alreadyRunning) ctx.progress.info(`${recipe} is already running${labText ? ` in lab ${lab}` : ""}; nothing to do.`);
    else ctx.progress.info(`${recipe} is up in ${((Date.now() - t0) / 1000).toFixed(1)}s: ${r.recipe.title}`);
    const rows = [["node", "container", "addresses"]];
    for (const n of Object.values(r.plan.nodes))
      rows.push([
        n.key,
        n.container,
        Object.entries(n.ip)
          .map(([k, v]) => `${v} (${k})`)
          .join(", "),
      ]);
    ctx.progress.info(table(rows));
    ctx.progress.info(
      `\nNext: follow labs/${recipe}.md; ./start.ts check ${recipe}${labText} shows your progress; ./start.ts stop ${recipe}${labText} ends it.`,
    );
    const attachNow = !p.flags["no-attach"] && Boolean(process.stdout.isTTY && process.stdin.isTTY);
    await openWorkspace(r.engine, r.plan, { choice: mux, attach: attachNow, say: (l) => ctx.progress.info(l) });
    return 0;
  },
};

/** A recipe's options as flags: `--control builtin` for recipe-3's `options.control`. */
export function recipeOptionFlags(recipe: string): FlagSpec[] {
  const own = new Set([...startCommand.flags, ...GLOBAL].map((f) => f.name));
  return Object.entries(loadRecipe(recipe).options).map(([name, o]) => {
    if (own.has(name)) throw new UserError(`Recipe ${recipe} has an option named "${name}", which is a flag of every start; rename it.`, 2);
    return {
      name,
      value: Object.keys(o.choices).join("|"),
      help: `${o.description} (default: ${o.default})`,
    };
  });
}

/**
 * Every recipe's option names are accepted by the parser, so that an option of another recipe
 * gets the recipe's own sentence ("recipe-1 has no --control option") from resolveOptions.
 */
export function allRecipeOptionFlags(): FlagSpec[] {
  const seen = new Map<string, FlagSpec>();
  for (const r of listRecipes()) for (const f of safeOptionFlags(r)) if (!seen.has(f.name)) seen.set(f.name, f);
  return [...seen.values()];
}

function safeOptionFlags(recipe: string): FlagSpec[] {
  try {
    return recipeOptionFlags(recipe);
  } catch {
    return [];
  }
}

function optionValues(p: Parsed): Record<string, string | undefined> {
  const own = new Set([...startCommand.flags, ...GLOBAL].map((f) => f.name));
  return Object.fromEntries(
    Object.entries(p.flags)
      .filter(([k]) => !own.has(k))
      .map(([k, v]) => [k, String(v)]),
  );
}
