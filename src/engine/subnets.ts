import { execa } from "execa";
import type { Engine } from "./engine.ts";
import { LABEL, PROJECT } from "./labels.ts";

export interface UsedSubnet {
  subnet: string;
  /** Who holds it, in words: a lab of ours, another engine network, or a host route. */
  by: string;
  /** True for networks the harness created (labelled). */
  ours: boolean;
}

/** Subnets in use: engine networks (ours named by lab/recipe) and host routes not on engine bridges. */
export async function usedSubnets(engine: Engine): Promise<UsedSubnet[]> {
  const used: UsedSubnet[] = [];
  for (const n of await engine.listNetworks("all")) {
    const ours = n.labels[LABEL.project] === PROJECT;
    const by = ours ? `lab "${n.labels[LABEL.lab]}" (${n.labels[LABEL.recipe]})` : `engine network "${n.name}"`;
    for (const subnet of n.subnets) used.push({ subnet, by, ours });
  }
  // Host routes: skip only those of this engine's own networks (listed above). Another
  // engine's bridges (podman's while Docker is in use, or the reverse) still take the subnet.
  const engineSubnets = new Set(used.map((u) => u.subnet));
  const r = await execa("ip", ["-4", "-o", "route", "show"], { reject: false });
  for (const line of r.stdout?.split("\n") ?? []) {
    const m = /^(\d+\.\d+\.\d+\.\d+\/\d+)\s.*dev (\S+)/.exec(line);
    if (!m || engineSubnets.has(m[1]!) || /^veth/.test(m[2]!)) continue;
    const other = /^(podman|docker|br-|cni-|wg3-)/.test(m[2]!);
    used.push({ subnet: m[1]!, by: other ? `another container engine's bridge ${m[2]}` : `a host route on ${m[2]}`, ours: false });
  }
  return used;
}
