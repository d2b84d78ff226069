import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UserError } from "../../src/errors.ts";
import { loadRecipe } from "../../src/recipe/load.ts";

/** A recipe folder "bad" holding `yaml` (and template files) in a fresh temporary root. */
export function recipeDir(yaml: string, files: Record<string, string> = {}): string {
  const root = mkdtempSync(join(tmpdir(), "wg3-recipes-"));
  mkdirSync(join(root, "bad"));
  writeFileSync(join(root, "bad", "recipe.yaml"), yaml);
  for (const [f, c] of Object.entries(files)) writeFileSync(join(root, "bad", f), c);
  return root;
}

/** The loader's refusal of `yaml`; fails the test when it loads. */
export function loadError(yaml: string, files: Record<string, string> = {}): UserError {
  try {
    loadRecipe("bad", recipeDir(yaml, files));
  } catch (e) {
    if (e instanceof UserError) return e;
    throw e;
  }
  throw new Error("expected the recipe to be rejected");
}

/** The smallest valid recipe: one network, one node. Tests append what they check. */
export const MINIMAL_RECIPE = `name: bad
title: t
networks:
  lan: { subnet: 10.9.9.0/24 }
nodes:
  a:
    image: wg-peer
    container: bad_a
    hostname: a
    networks: { lan: 10.9.9.2 }
`;
