import { describe, expect, it } from "vitest";
import type { Engine } from "../../src/engine/engine.ts";
import { type ActionContext, checkExercise, solveExercise } from "../../src/lab/actions.ts";
import { makePlan } from "../../src/lab/plan.ts";
import { loadRecipe } from "../../src/recipe/load.ts";
import { MINIMAL_RECIPE, recipeDir } from "../support/recipes.ts";

// The engine is beside the point here: it answers every command with a failure that echoes it.
const echoingEngine = { sh: async (_c: string, cmd: string) => ({ exitCode: 1, stdout: `out: ${cmd}`, stderr: "" }) } as unknown as Engine;

function contextFor(secret: boolean): { ctx: ActionContext; exercise: ActionContext["recipe"]["exercises"][number] } {
  const yaml = `${MINIMAL_RECIPE}exercises:\n  - id: e\n    title: t\n    hint: h\n    check:\n      - { node: a, run: "echo sekrit-key-123", secret: ${secret} }\n`;
  const recipe = loadRecipe("bad", recipeDir(yaml));
  const plan = makePlan(recipe, "default", {}, "run");
  return { ctx: { engine: echoingEngine, recipe, plan, captured: {} }, exercise: recipe.exercises[0]! };
}

describe("a failing check's detail (printed by check --json)", () => {
  it("never carries a secret action's command or output", async () => {
    const { ctx, exercise } = contextFor(true);
    const r = await checkExercise(ctx, exercise);
    expect(r.ok).toBe(false);
    expect(r.detail).not.toContain("sekrit");
    expect(r.detail).toContain("(hidden)");
  });

  it("negative control: a plain action's detail shows what ran", async () => {
    const { ctx, exercise } = contextFor(false);
    expect((await checkExercise(ctx, exercise)).detail).toContain("sekrit-key-123");
  });
});

describe("titles as an attendee reads them", () => {
  it("an exercise's title and a failing solve step's title have their placeholders filled", async () => {
    const yaml = `${MINIMAL_RECIPE}exercises:\n  - id: e\n    title: "t on {{ nodes.a.container }}"\n    hint: h\n    check:\n      - { node: a, run: "false" }\n    solve:\n      - { node: a, run: "false", title: "fix {{ nodes.a.container }}" }\n`;
    const recipe = loadRecipe("bad", recipeDir(yaml));
    const plan = makePlan(recipe, "default", {}, "run");
    const ctx: ActionContext = { engine: echoingEngine, recipe, plan, captured: {} };
    const container = plan.nodes.a!.container;
    expect((await checkExercise(ctx, recipe.exercises[0]!)).title).toBe(`t on ${container}`);
    await expect(solveExercise(ctx, recipe.exercises[0]!)).rejects.toThrow(`fix ${container} failed (exit 1)`);
  });
});
