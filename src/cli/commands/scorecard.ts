import { existsSync, statSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import type { Engine } from "../../engine/engine.ts";
import { UserError } from "../../errors.ts";
import { scorecardRows, scorecardSvg } from "../../graph/scorecard.ts";
import { type ActionContext, solveExercise } from "../../lab/actions.ts";
import { down, runningPlan, up } from "../../lab/lifecycle.ts";
import type { LabPlan } from "../../lab/plan.ts";
import { measureScorecard, SCORE_RECIPES, type Scorecard } from "../../lab/scorecard.ts";
import { loadRecipe } from "../../recipe/load.ts";
import { forOptions } from "../../recipe/nodes.ts";
import type { Parsed } from "../args.ts";
import { type Command, type Ctx, engineFor, LAB, labFlag, labOf, out, table } from "../command.ts";

/** The lab name scorecard starts a recipe under when it is not running (never the workshop's own). */
export const SCORECARD_LAB = "scorecard";

function recipesOf(p: Parsed): string[] {
  const given = p.positionals.length ? p.positionals : SCORE_RECIPES;
  for (const r of given) {
    if (!SCORE_RECIPES.includes(r))
      throw new UserError(`The scorecard compares ${SCORE_RECIPES.join(", ")}; "${r}" is not one of them.`, 2);
  }
  return [...new Set(given)];
}

/** The directory of --svg must exist before minutes of measuring, not after. */
function svgPathOf(p: Parsed): string | undefined {
  const f = p.flags.svg;
  if (f === undefined) return undefined;
  const path = resolve(String(f));
  const dir = dirname(path);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UserError(`--svg ${f}: the directory ${dir} does not exist.`, 2);
  return path;
}

async function planIfRunning(engine: Engine, recipe: string, lab: string): Promise<LabPlan | undefined> {
  return runningPlan(engine, recipe, lab).catch((e) => {
    if (e instanceof UserError) return undefined;
    throw e;
  });
}

/** Start the recipe in a lab of our own and apply every reference solution: the lab as the workshop ends it. */
async function startSolved(engine: Engine, recipe: string, lab: string, ctx: Ctx): Promise<{ plan: LabPlan; started: boolean }> {
  const r = await up(recipe, { lab, engine, progress: ctx.progress, signal: ctx.signal });
  if (r.alreadyRunning) return { plan: r.plan, started: false };
  const solved = forOptions(r.recipe, r.plan.options);
  const actx: ActionContext = { engine, recipe: solved, plan: r.plan, captured: {}, progress: ctx.progress, signal: ctx.signal };
  try {
    for (const ex of solved.exercises) {
      if (ctx.signal.aborted) throw new UserError("Interrupted.", 130);
      await solveExercise(actx, ex);
    }
  } catch (e) {
    await down(engine, recipe, lab);
    throw e;
  }
  return { plan: r.plan, started: true };
}

export const scorecardCommand: Command = {
  name: "scorecard",
  usage: "scorecard [<recipe>...] [--lab NAME] [--json] [--svg FILE] [--no-start]",
  summary: "the recipes side by side, measured in their labs: hops, RTT, who reads the payload, lines by hand, keys",
  details:
    `Compares ${SCORE_RECIPES.join(", ")} (all by default), each measured in its own running lab:\n` +
    "  hops, RTT   tracepath -n and ping from the roaming node to the webserver (recipe-0/1: the far peer)\n" +
    "  payload     a unique marker sent through (HTTP to the webserver, UDP to a peer) while tcpdump captures\n" +
    "              on the middle node (lighthouse tunnel; Headscale as coordinator and DERP relay; in the\n" +
    "              mesh, the third peer) and where it leaves the overlay; 'yes' = the marker is in that capture\n" +
    "              in clear. 'not delivered': the far end never saw it, so the lab is not solved yet\n" +
    "  by hand     non-blank, non-comment lines of the config files the person writes (read from the lab)\n" +
    "              plus the commands the reference solution types (wg-quick up, tailscale up, headscale ...)\n" +
    "  keys        per node: own private keys + others' public keys (wg show, tailscale status, headscale\n" +
    "              nodes list)\n" +
    "A running lab (the workshop's names, or --lab NAME) is only read: the probes leave nothing behind, and\n" +
    `an unsolved lab shows as unreachable. A recipe that is not running is started as lab "${SCORECARD_LAB}"\n` +
    "(or --lab NAME), solved with the reference solutions, measured and stopped again (also on Ctrl-C).\n" +
    "--no-start measures only what runs. Takes about 10 s per running lab, 30 s per started one.",
  flags: [
    LAB,
    { name: "json", help: "machine-readable output" },
    { name: "svg", value: "FILE", help: "also write the table as an SVG to FILE (labs/scorecard.svg in the guides)" },
    { name: "no-start", help: "only measure labs that already run; skip the others" },
  ],
  async run(p, ctx) {
    const recipes = recipesOf(p);
    const svg = svgPathOf(p);
    const lab = labOf(p);
    const startLab = p.flags.lab ? lab : SCORECARD_LAB;
    const engine = await engineFor(ctx);
    const cards: Scorecard[] = [];
    const skipped: string[] = [];
    ctx.onInterruptSay?.("Interrupted: stopping the labs this scorecard started (Ctrl-C again to quit at once)...");
    for (const name of recipes) {
      if (ctx.signal.aborted) throw new UserError("Interrupted: the labs this scorecard started have been stopped.", 130);
      let plan = await planIfRunning(engine, name, lab);
      let started = false;
      if (!plan && p.flags["no-start"]) {
        skipped.push(`${name} is not running${labFlag(lab) ? ` in lab ${lab}` : ""}: skipped (--no-start).`);
        continue;
      }
      try {
        if (!plan) ({ plan, started } = await startSolved(engine, name, startLab, ctx));
        const recipe = forOptions(loadRecipe(name), plan.options);
        const measured = plan;
        cards.push(
          await ctx.progress.step(`measure ${name}${labFlag(plan.lab)}`, () => measureScorecard(engine, measured, recipe, ctx.signal)),
        );
      } finally {
        if (started) await ctx.progress.step(`stop ${name} --lab ${startLab}`, () => down(engine, name, startLab));
      }
    }
    if (ctx.signal.aborted) throw new UserError("Interrupted: the labs this scorecard started have been stopped.", 130);
    if (svg) writeFileSync(svg, scorecardSvg(cards));
    if (p.flags.json) out(JSON.stringify({ scorecards: cards, skipped }, null, 2));
    else {
      out(table(scorecardRows(cards)));
      for (const s of skipped) out(s);
      if (svg) out(`\nwrote ${svg}`);
    }
    return 0;
  },
};
