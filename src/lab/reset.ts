import type { Engine } from "../engine/engine.ts";
import { LABEL } from "../engine/labels.ts";
import { UserError } from "../errors.ts";
import { loadRecipe } from "../recipe/load.ts";
import { forOptions } from "../recipe/nodes.ts";
import type { Recipe } from "../recipe/types.ts";
import { type Progress, stepper } from "../ui/progress.ts";
import { type ActionContext, solveExercise } from "./actions.ts";
import { readHintLevels, writeHintLevels } from "./hints.ts";
import { bringUp, createContainers } from "./lifecycle.ts";
import { liveOptions, withLabLock } from "./live.ts";
import { type LabPlan, savePlan } from "./plan.ts";

type Exercise = Recipe["exercises"][number];

/**
 * The exercises to replay before `to` (all of them but `to` and those after it); without `to`,
 * none. `recipe` is the recipe narrowed to the lab's options, whose exercises are the valid ones.
 */
export function exercisesBefore(recipe: Recipe, to?: string, optionsText = ""): Exercise[] {
  if (to === undefined) return [];
  const i = recipe.exercises.findIndex((e) => e.id === to);
  if (i < 0)
    throw new UserError(
      `${recipe.name}${optionsText} has no exercise "${to}"; its exercises are: ${recipe.exercises.map((e) => e.id).join(", ")}.`,
      2,
    );
  return recipe.exercises.slice(0, i);
}

/**
 * The options a fresh lab starts with: the lab's own, live ones as last set, except a value only
 * `set` may choose (a cut coordinator, which setup needs): a fresh lab has that option's default.
 */
export function freshOptions(recipe: Recipe, options: Record<string, string>): { options: Record<string, string>; dropped: string[] } {
  const out = { ...options };
  const dropped: string[] = [];
  for (const o of liveOptions(recipe)) {
    const spec = recipe.options[o]!;
    if (!spec.choices[out[o]!]?.liveOnly) continue;
    dropped.push(`${o}=${out[o]}`);
    out[o] = spec.default;
  }
  return { options: out, dropped };
}

export interface ResetResult {
  plan: LabPlan;
  /** The exercises whose reference solutions were replayed, in order. */
  replayed: string[];
  /** Live values not kept, since a lab cannot start with them (`coordinator=blackholed`). */
  dropped: string[];
}

/** The label a lab's containers carry beyond the harness's own: a classroom's name on each seat. */
async function extraLabels(engine: Engine, plan: LabPlan): Promise<Record<string, string>> {
  const [c] = await engine.listContainers({ lab: plan.lab, recipe: plan.recipe });
  const classroom = c?.labels[LABEL.classroom];
  return classroom ? { [LABEL.classroom]: classroom } : {};
}

/**
 * Bring a running lab back to the state just before exercise `to` (or to a fresh lab): its
 * containers are recreated from the same plan (names, addresses, subnets, keys and TLS material
 * stay; the networks are kept, so no other lab can take a subnet meanwhile), setup runs as at a
 * start, then the earlier exercises' reference solutions. Nothing outside the lab's containers
 * and its state directory is touched.
 */
export async function resetLab(
  engine: Engine,
  plan: LabPlan,
  o: { to?: string; progress?: Progress; signal?: AbortSignal },
): Promise<ResetResult> {
  const base = loadRecipe(plan.recipe);
  const recipe = forOptions(base, plan.options);
  const earlier = exercisesBefore(recipe, o.to);
  const { options, dropped } = freshOptions(base, plan.options);
  const fresh: LabPlan = { ...plan, options };
  const ctx: ActionContext = { engine, recipe, plan: fresh, captured: {}, progress: o.progress, signal: o.signal };
  const labels = await extraLabels(engine, plan);
  await withLabLock(plan.lab, plan.recipe, `reset${o.to ? ` --to ${o.to}` : ""}`, async () => {
    await stepper(o.progress)(`remove ${plan.recipe}'s containers (networks, keys and addresses stay)`, () =>
      engine.removeContainers({ lab: plan.lab, recipe: plan.recipe }),
    );
    savePlan(fresh);
    await createContainers(ctx, labels);
    await bringUp(ctx);
  });
  for (const ex of earlier) await solveExercise(ctx, ex);
  forgetHints(fresh, earlier);
  return { plan: fresh, replayed: earlier.map((e) => e.id), dropped };
}

/** The exercises from `to` on are not done again: their hints start over. */
function forgetHints(plan: LabPlan, done: Exercise[]): void {
  const levels = readHintLevels(plan);
  writeHintLevels(plan, Object.fromEntries(Object.entries(levels).filter(([id]) => done.some((e) => e.id === id))));
}
