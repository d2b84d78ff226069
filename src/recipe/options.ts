import type { Recipe } from "./types.ts";

/**
 * A recipe's options as a command line offers them: `--<name> <choice>`. This is what a
 * generic CLI needs from the recipe format (flag, help text, default, the allowed values),
 * so that a new option in recipe.yaml needs no TypeScript.
 */
export interface RecipeOption {
  name: string;
  flag: string;
  description: string;
  default: string;
  /** In the order recipe.yaml lists them. */
  choices: string[];
}

export function recipeOptions(recipe: Pick<Recipe, "options">): RecipeOption[] {
  return Object.entries(recipe.options).map(([name, o]) => ({
    name,
    flag: `--${name}`,
    description: o.description,
    default: o.default,
    choices: Object.keys(o.choices),
  }));
}
