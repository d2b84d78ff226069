import type { Engine } from "../engine/engine.ts";
import { UserError } from "../errors.ts";
import type { QDISC_NAMES as SCHEMA_QDISCS } from "../recipe/schema.ts";
import type { Recipe } from "../recipe/types.ts";

/**
 * Kernel queueing disciplines a recipe option may need (`requires:` on a choice). Containers
 * share the engine host's kernel, so one probe in any container with NET_ADMIN answers for the
 * lab: add the qdisc to that container's own loopback and take it away again.
 */
export const QDISCS: Record<(typeof SCHEMA_QDISCS)[number], { args: string; config: string; gives: string }> = {
  netem: { args: "delay 1ms", config: "CONFIG_NET_SCH_NETEM", gives: "latency" },
  tbf: { args: "rate 1mbit burst 32kbit latency 400ms", config: "CONFIG_NET_SCH_TBF", gives: "rate limits" },
};
export type Qdisc = keyof typeof QDISCS;
export const QDISC_NAMES = Object.keys(QDISCS) as [Qdisc, ...Qdisc[]];

/** A shell line that exits 0 only when the kernel has the qdisc (leaves nothing behind). */
export function qdiscProbe(q: Qdisc): string {
  return `tc qdisc add dev lo root handle 9: ${q} ${QDISCS[q].args} 2>/dev/null && tc qdisc del dev lo root handle 9:`;
}

/** Which qdiscs the kernel under this container has. */
export async function qdiscsIn(engine: Engine, container: string, wanted: readonly Qdisc[] = QDISC_NAMES): Promise<Record<Qdisc, boolean>> {
  const out = {} as Record<Qdisc, boolean>;
  for (const q of wanted) out[q] = (await engine.sh(container, qdiscProbe(q))).exitCode === 0;
  return out;
}

/** Runs a probe script "on" a node: in its running container, or in a throwaway one of its image. */
export type NodeProbe = (node: string, script: string) => Promise<boolean>;

/** Probe in the lab's running containers (a `set`). */
export function inContainers(engine: Engine, containerOf: (node: string) => string): NodeProbe {
  return async (node, script) => (await engine.sh(containerOf(node), script)).exitCode === 0;
}

/** Probe in a throwaway container of the node's image, with NET_ADMIN (a start, before anything is created). */
export function inThrowaway(engine: Engine, imageOf: (node: string) => string): NodeProbe {
  return async (node, script) =>
    (await engine.runOnce(imageOf(node), ["sh", "-c", script], { entrypoint: [], capAdd: ["NET_ADMIN"] })).exitCode === 0;
}

/**
 * Refuse, before anything changes, values whose choice needs a qdisc the kernel lacks: one
 * sentence naming the value, the missing qdisc and its kernel option. The probe runs on the
 * node of the option's first `apply` action (a router: `tc` and NET_ADMIN).
 */
export async function requireQdiscs(recipe: Recipe, probe: NodeProbe, values: Record<string, string>): Promise<void> {
  for (const [option, value] of Object.entries(values)) {
    const spec = recipe.options[option];
    const needs = spec?.choices[value]?.requires ?? [];
    const node = spec?.apply.find((a) => a.node)?.node;
    if (!needs.length || !node) continue;
    const missing: Qdisc[] = [];
    for (const q of needs) if (!(await probe(node, qdiscProbe(q)))) missing.push(q);
    if (missing.length)
      throw new UserError(
        `${option}=${value} needs the ${missing.join(" and ")} queueing discipline, which this host's kernel lacks (${missing.map((q) => QDISCS[q].config).join(", ")} not set); nothing was changed (./start.ts doctor lists the impairments this host supports).`,
        2,
      );
  }
}
