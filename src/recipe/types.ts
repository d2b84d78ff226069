import type * as z from "zod";
import type { actionSchema, fileSchema, nodeOverrideSchema, nodeSchema, recipeSchema } from "./schema.ts";

/** The types of recipes/<name>/recipe.yaml after validation: all inferred from schema.ts. */

export type RecipeDoc = z.output<typeof recipeSchema>;

export type Recipe = RecipeDoc & {
  /** Folder holding recipe.yaml and its templates. */
  dir: string;
  /** recipe.yaml as shown in messages (relative to the working directory or the repo). */
  file: string;
};

/** A node as written: fields left out take defaults when the node is made concrete (nodes.ts). */
export type NodeInput = z.output<typeof nodeSchema>;
/** An option's override of a node: any node field, each replacing the base node's. */
export type NodeOverride = z.output<typeof nodeOverrideSchema>;
/** A node with its defaults filled in (role text, the image role's caps, devices and sysctls): what a container is made from. */
export type NodeSpec = NodeInput & Required<Pick<NodeInput, "role" | "interactive" | "caps" | "sysctls" | "devices" | "env" | "files">>;

/** Alternatives selected at start time, e.g. `--control headscale|builtin`. */
export type OptionSpec = RecipeDoc["options"][string];
export type NetworkSpec = RecipeDoc["networks"][string];
export type FileSpec = z.output<typeof fileSchema>;
export type Action = z.output<typeof actionSchema>;
export type Expect = NonNullable<Action["expect"]>;
export type Exercise = RecipeDoc["exercises"][number];
export type MatrixEntry = RecipeDoc["matrix"][number];

/** The name other setup steps' `needs` know a step by: its `id`, or the value it captures. */
export function stepName(a: Action): string | undefined {
  return a.id ?? a.capture?.as;
}
