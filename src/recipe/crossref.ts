import { existsSync } from "node:fs";
import { join } from "node:path";
import { ipInCidr } from "./net.ts";
import { nodeSchema } from "./schema.ts";
import { type Action, type NodeOverride, type Recipe, stepName } from "./types.ts";

/**
 * The checks a schema cannot make: names that refer to other parts of the recipe, addresses
 * inside their subnets, template files on disk. They run once the shape is valid, and write
 * list items as `.i` (shape errors write `[i]`).
 */
export type At = (path: (string | number)[], message: string) => void;

const list = (names: Iterable<string>) => [...names].join(", ");

/** Fields a node an option adds must give: the ones the schema requires of a base node. */
const REQUIRED_NODE_FIELDS = Object.entries(nodeSchema.shape)
  .filter(([, s]) => !s.safeParse(undefined).success)
  .map(([k]) => k);

/** Every node name an action may use: the base nodes and those options add. */
export function allNodeNames(recipe: Recipe): Set<string> {
  const added = Object.values(recipe.options).flatMap((o) => Object.values(o.choices).flatMap((c) => Object.keys(c.nodes ?? {})));
  return new Set([...Object.keys(recipe.nodes), ...added]);
}

/** The fields `node` gives (a base node, or an option's override), judged on `effective`, the node they end up in. */
function checkNode(recipe: Recipe, node: NodeOverride, effective: NodeOverride, path: (string | number)[], at: At): void {
  const { networks } = recipe;
  for (const [net, ip] of Object.entries(node.networks ?? {})) {
    const subnet = networks[net]?.subnet;
    if (!subnet) at([...path, "networks", net], `no network named "${net}" (networks: ${list(Object.keys(networks))})`);
    else if (!ipInCidr(ip, subnet)) at([...path, "networks", net], `${ip} is not inside ${subnet}`);
  }
  const gateway = node.gateway ?? (node.networks && effective.gateway);
  if (gateway) {
    const gw = recipe.nodes[gateway];
    if (!gw) at([...path, "gateway"], `no node named "${gateway}" (nodes: ${list(Object.keys(recipe.nodes))})`);
    else if (!Object.keys(effective.networks ?? {}).some((net) => gw.networks[net]))
      at([...path, "gateway"], `${gateway} shares no network with ${String(path.at(-1))}`);
  }
  node.files?.forEach((f, i) => {
    if (f.template && !existsSync(join(recipe.dir, f.template)))
      at([...path, "files", i, "template"], `template file ${f.template} does not exist in ${recipe.name}/`);
  });
  checkWhen(recipe, node.when, [...path, "when"], at);
}

/** `when: option=value` names an option of this recipe and one of its choices. */
function checkWhen(recipe: Recipe, when: string | undefined, path: (string | number)[], at: At): void {
  if (!when) return;
  const [opt = "", value = ""] = when.split("=");
  const spec = recipe.options[opt];
  if (!spec) at(path, `no option named "${opt}" (options: ${list(Object.keys(recipe.options)) || "none"})`);
  else if (!spec.choices[value]) at(path, `"${value}" is not one of the choices of ${opt} (${list(Object.keys(spec.choices))})`);
}

/** Option overrides get the node checks too, at load time rather than at start. */
function checkOptions(recipe: Recipe, at: At): void {
  for (const [o, spec] of Object.entries(recipe.options)) {
    if (!spec.choices[spec.default])
      at(["options", o, "default"], `"${spec.default}" is not one of the choices (${list(Object.keys(spec.choices))})`);
    else if (spec.choices[spec.default]?.liveOnly)
      at(["options", o, "default"], `"${spec.default}" is liveOnly, so it cannot be what a start chooses`);
    if (Object.values(spec.choices).some((c) => c.liveOnly) && !spec.apply.length)
      at(["options", o], "a liveOnly choice needs `apply` actions, or `set` could never put it in place");
    for (const [c, choice] of Object.entries(spec.choices)) {
      for (const [n, override] of Object.entries(choice.nodes ?? {})) {
        const path = ["options", o, "choices", c, "nodes", n];
        const base = recipe.nodes[n];
        if (!base)
          for (const f of REQUIRED_NODE_FIELDS) if (!(f in override)) at(path, `missing required field "${f}" (${n} is not in nodes)`);
        checkNode(recipe, override, { ...base, ...override }, path, at);
      }
    }
  }
}

function checkActions(recipe: Recipe, names: Set<string>, actions: Action[], path: (string | number)[], at: At): void {
  actions.forEach((a, i) => {
    if (a.set) checkSet(recipe, a.set, [...path, i, "set"], at);
    else if (!a.node) at([...path, i], 'missing required field "node"');
    else if (!names.has(a.node)) at([...path, i, "node"], `no node named "${a.node}" (nodes: ${list(names)})`);
    const verbs = [a.run, a.file, a.wait, a.set].filter((x) => x !== undefined).length;
    if (verbs !== 1) at([...path, i], a.set ? "needs exactly one of run, file, wait, set" : "needs exactly one of run, file, wait");
    if (a.file?.template && !existsSync(join(recipe.dir, a.file.template)))
      at([...path, i, "file", "template"], `template file ${a.file.template} does not exist in ${recipe.name}/`);
    checkWhen(recipe, a.when, [...path, i, "when"], at);
  });
}

/**
 * Setup steps run side by side where they say what they need: each name in `needs` is an
 * earlier step, and a step that uses a captured value needs, directly or through other steps,
 * the step that captures it. Elsewhere (checks, solutions, apply) actions run in order.
 */
function checkNeeds(setup: Action[], at: At): void {
  // Each named step, with every step it waits for, directly or not.
  const earlier = new Map<string, Set<string>>();
  setup.forEach((a, i) => {
    const before = new Set<string>();
    for (const n of a.needs ?? []) {
      const dep = earlier.get(n);
      if (!dep) at(["setup", i, "needs"], `no earlier step named "${n}" (named so far: ${list(earlier.keys()) || "none"})`);
      else for (const x of [n, ...dep]) before.add(x);
    }
    if (!a.needs) for (const x of earlier.keys()) before.add(x);
    if (a.needs) {
      const text = JSON.stringify([a.run, a.wait, a.file, a.title]);
      for (const m of text.matchAll(/vars\.([A-Za-z_][A-Za-z0-9_]*)/g)) {
        const v = m[1]!;
        const captured = setup.some((b, j) => j < i && b.capture?.as === v);
        if (captured && !before.has(v)) at(["setup", i, "needs"], `uses vars.${v}, so it needs the step that captures it ("${v}")`);
      }
    }
    const name = stepName(a);
    if (name && earlier.has(name)) at(["setup", i], `a second step named "${name}"`);
    else if (name) earlier.set(name, before);
  });
}

function checkNoNeeds(actions: Action[], path: (string | number)[], at: At): void {
  actions.forEach((a, i) => {
    if (a.needs || a.id) at([...path, i], "`id` and `needs` are for setup steps only (these actions run one after another)");
  });
}

/** A `set` names live options (with `apply` actions) and one of their choices. */
function checkSet(recipe: Recipe, values: Record<string, string>, path: (string | number)[], at: At): void {
  for (const [o, v] of Object.entries(values)) {
    const spec = recipe.options[o];
    if (!spec?.apply.length) at([...path, o], `no live option named "${o}" (an option with apply)`);
    else if (!spec.choices[v]) at([...path, o], `"${v}" is not one of the choices (${list(Object.keys(spec.choices))})`);
  }
}

function checkMatrix(recipe: Recipe, names: Set<string>, at: At): void {
  recipe.matrix.forEach((m, i) => {
    for (const [o, v] of Object.entries(m.set)) {
      const spec = recipe.options[o];
      if (!spec) at(["matrix", i, "set", o], `no option named "${o}" (options: ${list(Object.keys(recipe.options))})`);
      else if (!spec.choices[v]) at(["matrix", i, "set", o], `"${v}" is not one of the choices (${list(Object.keys(spec.choices))})`);
    }
    for (const n of m.between) if (!names.has(n)) at(["matrix", i, "between"], `no node named "${n}"`);
  });
}

function checkReachability(recipe: Recipe, names: Set<string>, at: At): void {
  const r = recipe.reachability;
  if (!r) return;
  r.nodes.forEach((n, i) => {
    if (!names.has(n)) at(["reachability", "nodes", i], `no node named "${n}"`);
  });
  r.ports.forEach((p, i) => {
    if (!Number.isInteger(p) || p < 1 || p > 65535) at(["reachability", "ports", i], `${p} is not a TCP port (1-65535)`);
  });
  r.allow.forEach((a, i) => {
    for (const k of ["from", "to"] as const)
      if (!r.nodes.includes(a[k])) at(["reachability", "allow", i, k], `"${a[k]}" is not one of reachability.nodes`);
    for (const p of a.ports) if (!r.ports.includes(p)) at(["reachability", "allow", i, "ports"], `${p} is not one of reachability.ports`);
  });
}

export function crossCheck(recipe: Recipe, folder: string, at: At): void {
  if (recipe.name !== folder) at(["name"], `must match the folder name "${folder}"`);
  const names = allNodeNames(recipe);
  for (const [n, node] of Object.entries(recipe.nodes)) checkNode(recipe, node, node, ["nodes", n], at);
  checkActions(recipe, names, recipe.setup, ["setup"], at);
  checkNeeds(recipe.setup, at);
  checkReachability(recipe, names, at);
  recipe.exercises.forEach((e, i) => {
    checkWhen(recipe, e.when, ["exercises", i, "when"], at);
    checkActions(recipe, names, e.check, ["exercises", i, "check"], at);
    checkActions(recipe, names, e.solve, ["exercises", i, "solve"], at);
    checkNoNeeds(e.check, ["exercises", i, "check"], at);
    checkNoNeeds(e.solve, ["exercises", i, "solve"], at);
    e.mistakes.forEach((m, j) => {
      for (const n of m.nodes)
        if (!names.has(n)) at(["exercises", i, "mistakes", j, "nodes"], `no node named "${n}" (nodes: ${list(names)})`);
    });
  });
  recipe.overlay.forEach((o, i) => {
    for (const n of o.between) if (!names.has(n)) at(["overlay", i, "between"], `no node named "${n}"`);
  });
  for (const k of recipe.wireguard?.keys ?? []) if (!names.has(k)) at(["wireguard", "keys"], `no node named "${k}"`);
  if (recipe.tls && !names.has(recipe.tls.for)) at(["tls", "for"], `no node named "${recipe.tls.for}"`);
  checkOptions(recipe, at);
  for (const [o, spec] of Object.entries(recipe.options)) {
    checkActions(recipe, names, spec.apply, ["options", o, "apply"], at);
    checkNoNeeds(spec.apply, ["options", o, "apply"], at);
  }
  checkMatrix(recipe, names, at);
}
