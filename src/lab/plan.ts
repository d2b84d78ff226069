import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { UserError } from "../errors.ts";
import { stateDir } from "../paths.ts";
import { intToIp, ipToInt } from "../recipe/net.ts";
import { effectiveNodes } from "../recipe/nodes.ts";
import type { NodeSpec, Recipe } from "../recipe/types.ts";
import type { WgKeyPair } from "../wireguard/keys.ts";
import type { LabTls } from "./tls.ts";

export const DEFAULT_LAB = "default";

export interface PlannedNetwork {
  key: string;
  /** Engine-side name. */
  name: string;
  subnet: string;
  gateway: string;
  prefixLen: number;
  isolated: boolean;
}

export interface PlannedNode extends NodeSpec {
  key: string;
  /** Engine-side container name (the workshop's name in the default lab). */
  container: string;
  ip: Record<string, string>;
}

/** A recipe made concrete for one lab: names, subnets, addresses, option choices, secrets. */
export interface LabPlan {
  lab: string;
  recipe: string;
  run: string;
  options: Record<string, string>;
  networks: Record<string, PlannedNetwork>;
  nodes: Record<string, PlannedNode>;
  vars: Record<string, string>;
  wg: Record<string, WgKeyPair>;
  tls?: LabTls;
  createdAt: string;
}

export function validLabName(lab: string): string {
  if (!/^[a-z0-9][a-z0-9-]{0,19}$/.test(lab)) {
    throw new UserError(`Lab name "${lab}" is not valid: use up to 20 lowercase letters, digits and dashes.`);
  }
  return lab;
}

export function prefixFor(lab: string): string {
  return lab === DEFAULT_LAB ? "" : `${lab}-`;
}

/** Choose option values (`--control builtin`), validated against the recipe's choices. */
export function resolveOptions(recipe: Recipe, given: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, spec] of Object.entries(recipe.options)) {
    const v = given[name] ?? spec.default;
    if (!spec.choices[v])
      throw new UserError(`--${name} must be one of ${Object.keys(spec.choices).join(", ")} for ${recipe.name}, not "${v}".`);
    out[name] = v;
  }
  for (const [name, v] of Object.entries(given)) {
    if (v !== undefined && !recipe.options[name])
      throw new UserError(
        `${recipe.name} has no --${name} option${
          Object.keys(recipe.options).length
            ? ` (it has: ${Object.keys(recipe.options)
                .map((o) => `--${o}`)
                .join(", ")})`
            : ""
        }.`,
      );
  }
  return out;
}

/** A start may not choose a value only `set` may (the lab's setup could not complete with it). */
export function refuseLiveOnlyAtStart(recipe: Recipe, given: Record<string, string | undefined>): void {
  for (const [name, v] of Object.entries(given)) {
    if (v === undefined || !recipe.options[name]?.choices[v]?.liveOnly) continue;
    throw new UserError(
      `--${name} ${v} can only be set on a running lab (./start.ts set ${recipe.name} ${name}=${v}), since the lab's setup needs it otherwise; nothing was created.`,
    );
  }
}

/**
 * Build the plan. `subnets` maps network keys to the subnets to use (the recipe's own in the
 * default lab; free ones chosen by the caller for other labs); host parts of addresses are kept.
 */
export function makePlan(
  recipe: Recipe,
  lab: string,
  options: Record<string, string>,
  run: string,
  subnets: Record<string, string> = {},
  wg: Record<string, WgKeyPair> = {},
): LabPlan {
  const prefix = prefixFor(lab);
  const networks: Record<string, PlannedNetwork> = {};
  const shift: Record<string, number> = {};
  for (const [key, n] of Object.entries(recipe.networks)) {
    const subnet = subnets[key] ?? n.subnet;
    const [base, bits] = subnet.split("/");
    const prefixLen = Number(bits);
    const size = 2 ** (32 - prefixLen);
    const start = Math.floor(ipToInt(base!) / size) * size;
    const origStart = Math.floor(ipToInt(n.subnet.split("/")[0]!) / size) * size;
    shift[key] = start - origStart;
    networks[key] = {
      key,
      name: `${prefix}${recipe.name}_${key}`,
      subnet: `${intToIp(start)}/${prefixLen}`,
      gateway: intToIp(start + 1),
      prefixLen,
      isolated: n.isolated,
    };
  }
  const nodes: Record<string, PlannedNode> = {};
  for (const [key, n] of Object.entries(effectiveNodes(recipe, options))) {
    const ip = Object.fromEntries(Object.entries(n.networks).map(([net, addr]) => [net, intToIp(ipToInt(addr) + (shift[net] ?? 0))]));
    nodes[key] = { ...n, key, container: `${prefix}${n.container}`, ip };
  }
  const vars = { ...recipe.vars };
  for (const [opt, value] of Object.entries(options)) Object.assign(vars, recipe.options[opt]?.choices[value]?.vars ?? {});
  return {
    lab,
    recipe: recipe.name,
    run,
    options,
    networks,
    nodes,
    vars,
    wg,
    createdAt: new Date().toISOString(),
  };
}

/** What templates and commands can refer to: {{ nodes.X.ip.NET }}, {{ wg.X.publicKey }}, ... */
export function scopeOf(plan: LabPlan, extraVars: Record<string, string> = {}): Record<string, unknown> {
  return {
    lab: { name: plan.lab, prefix: prefixFor(plan.lab) },
    recipe: { name: plan.recipe },
    options: plan.options,
    networks: plan.networks,
    nodes: Object.fromEntries(
      Object.entries(plan.nodes).map(([k, n]) => [k, { container: n.container, hostname: n.hostname, role: n.role, ip: n.ip }]),
    ),
    wg: plan.wg,
    tls: plan.tls ?? {},
    vars: { ...plan.vars, ...extraVars },
  };
}

function planFile(lab: string, recipe: string): string {
  return join(stateDir(), "labs", lab, recipe, "plan.json");
}

/** Plans hold private keys: stored 0600 under .state/, never printed. */
export function savePlan(plan: LabPlan): void {
  const file = planFile(plan.lab, plan.recipe);
  mkdirSync(join(file, ".."), { recursive: true, mode: 0o700 });
  writeFileSync(file, JSON.stringify(plan, null, 2), { mode: 0o600 });
}

export function readPlan(lab: string, recipe: string): LabPlan | undefined {
  const file = planFile(lab, recipe);
  return existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as LabPlan) : undefined;
}

/**
 * The subnets every other lab's plan holds. A plan is written before its networks exist, and an
 * engine's bridge (and so its host route) only once a container uses it: another engine on this
 * machine (a class's second one) would not see the subnet taken in between.
 */
export function plannedSubnets(except: { lab: string; recipe: string }): string[] {
  const root = join(stateDir(), "labs");
  if (!existsSync(root)) return [];
  const out: string[] = [];
  for (const lab of readdirSync(root))
    for (const recipe of existsSync(join(root, lab)) ? readdirSync(join(root, lab)) : []) {
      if (lab === except.lab && recipe === except.recipe) continue;
      try {
        for (const n of Object.values(readPlan(lab, recipe)?.networks ?? {})) out.push(n.subnet);
      } catch {
        // A plan being written right now: its lab retries if it collides.
      }
    }
  return out;
}

export function labStateDir(lab: string, recipe: string): string {
  return join(stateDir(), "labs", lab, recipe);
}

export function deletePlan(lab: string, recipe: string): void {
  rmSync(labStateDir(lab, recipe), { recursive: true, force: true });
  // The lab's own folder too once no recipe of it is left, so that stopped labs leave nothing.
  const labDir = dirname(labStateDir(lab, recipe));
  if (existsSync(labDir) && readdirSync(labDir).length === 0) rmSync(labDir, { recursive: true, force: true });
}
