import { IMAGE_ROLES } from "../images/roles.ts";
import type { NodeInput, NodeOverride, NodeSpec, Recipe } from "./types.ts";

/** `when: option=value` holds for these option values (no `when`: always). */
export function matchesWhen(when: string | undefined, options: Record<string, string>): boolean {
  if (!when) return true;
  const [k, v] = when.split("=");
  return options[k!] === v;
}

/** The recipe as a lab started with these option values sees it: only the exercises whose `when` holds. */
export function forOptions(recipe: Recipe, options: Record<string, string>): Recipe {
  return { ...recipe, exercises: recipe.exercises.filter((e) => matchesWhen(e.when, options)) };
}

/** Fill in what a node left out: its role text, and its image role's caps, devices and sysctls. */
export function withDefaults(node: NodeInput): NodeSpec {
  const role = IMAGE_ROLES[node.image];
  return {
    ...node,
    role: node.role ?? node.hostname,
    interactive: node.interactive ?? false,
    caps: node.caps ?? [...role.caps],
    sysctls: node.sysctls ?? { ...role.sysctls },
    devices: node.devices ?? [...role.devices],
    env: node.env ?? {},
    files: node.files ?? [],
  };
}

/** A node an option adds must be whole; the loader refuses recipes where one is not, so this never throws for a loaded recipe. */
function whole(key: string, n: NodeOverride): NodeInput {
  const { image, container, hostname, networks } = n;
  if (image && container && hostname && networks) return { ...n, image, container, hostname, networks };
  throw new Error(`node ${key} of an option lacks image, container, hostname or networks`);
}

/**
 * The nodes that exist for these option values, with option overrides applied, then defaults.
 * Defaults come last so that an override's `image` brings its own role's caps and devices.
 */
export function effectiveNodes(recipe: Recipe, options: Record<string, string>): Record<string, NodeSpec> {
  const nodes: Record<string, NodeOverride> = {};
  for (const [k, n] of Object.entries(recipe.nodes)) if (matchesWhen(n.when, options)) nodes[k] = n;
  for (const [opt, value] of Object.entries(options)) {
    for (const [k, override] of Object.entries(recipe.options[opt]?.choices[value]?.nodes ?? {})) {
      nodes[k] = { ...nodes[k], ...override };
    }
  }
  return Object.fromEntries(Object.entries(nodes).map(([k, n]) => [k, withDefaults(whole(k, n))]));
}
