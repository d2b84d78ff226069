import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { UserError } from "../errors.ts";
import { ROOT, recipesDir } from "../paths.ts";
import { lineAt, type Parsed, parseYaml, S, SchemaError, type Shape, validate } from "./schema.ts";
import type { Action, Exercise, FileSpec, NodeSpec, Recipe } from "./types.ts";

const NAME = /^[a-z0-9][a-z0-9-]*$/;
const NAME_TEXT = "lowercase letters, digits and dashes";
const CIDR = /^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\/\d{1,2}$/;
const IPV4 = /^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$/;

const fileShape = S.obj(
  {
    path: S.str(/^\//, "an absolute path"),
    template: S.str(),
    content: S.str(),
    mode: S.str(/^0?[0-7]{3}$/, 'an octal mode like "0600"'),
  },
  ["path"],
);

const actionShape = S.obj(
  {
    node: S.str(NAME, NAME_TEXT),
    title: S.str(),
    run: S.str(),
    file: fileShape,
    wait: S.str(),
    timeout: S.num(),
    capture: S.obj({ as: S.str(/^[A-Za-z_][A-Za-z0-9_]*$/, "an identifier"), json: S.str() }, ["as"]),
    secret: S.bool(),
    expect: S.obj({ exit: S.num(), stdoutContains: S.str(), stdoutMatches: S.str() }),
    when: S.str(/^[a-z-]+=[a-z0-9-]+$/, "option=value"),
    set: S.map(S.str(NAME, NAME_TEXT), NAME, NAME_TEXT),
  },
  [],
);

const nodeFields: Record<string, Shape> = {
  image: S.str(),
  container: S.str(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, "a container name"),
  hostname: S.str(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, "a host name"),
  role: S.str(),
  interactive: S.bool(),
  networks: S.map(S.str(IPV4, "an IPv4 address"), NAME, NAME_TEXT),
  caps: S.list(S.str(/^[A-Z_]+$/, "a capability like NET_ADMIN")),
  sysctls: S.scalars(),
  gateway: S.str(NAME, NAME_TEXT),
  devices: S.list(S.str(/^\/dev\//, "a device path")),
  env: S.scalars(),
  command: S.list(S.str()),
  files: S.list(fileShape),
  ready: S.str(),
  diagnose: S.str(),
  when: S.str(/^[a-z-]+=[a-z0-9-]+$/, "option=value"),
};

export const recipeShape: Shape = S.obj(
  {
    name: S.str(NAME, NAME_TEXT),
    title: S.str(),
    summary: S.str(),
    guide: S.str(),
    networks: S.map(
      S.obj({ subnet: S.str(CIDR, "a CIDR like 192.168.99.0/24"), isolated: S.bool(), description: S.str() }, ["subnet"]),
      NAME,
      NAME_TEXT,
    ),
    wireguard: S.obj({ interface: S.str(/^[a-z0-9-]{1,15}$/, "an interface name"), keys: S.list(S.str(NAME, NAME_TEXT)) }, [
      "interface",
      "keys",
    ]),
    tls: S.obj({ for: S.str(NAME, NAME_TEXT), names: S.list(S.str()) }, ["for", "names"]),
    vars: S.scalars(),
    options: S.map(
      S.obj(
        {
          description: S.str(),
          default: S.str(),
          apply: S.list(actionShape),
          choices: S.map(
            S.obj({ description: S.str(), nodes: S.map(S.obj(nodeFields), NAME, NAME_TEXT), vars: S.scalars() }),
            NAME,
            NAME_TEXT,
          ),
        },
        ["description", "default", "choices"],
      ),
      NAME,
      NAME_TEXT,
    ),
    nodes: S.map(S.obj(nodeFields, ["image", "container", "hostname", "networks"]), NAME, NAME_TEXT),
    overlay: S.list(S.obj({ between: S.list(S.str(NAME, NAME_TEXT)), label: S.str(), kind: S.oneOf("tunnel", "control") }, ["between"])),
    setup: S.list(actionShape),
    matrix: S.list(
      S.obj(
        {
          set: S.map(S.str(NAME, NAME_TEXT), NAME, NAME_TEXT),
          between: S.list(S.str(NAME, NAME_TEXT)),
          path: S.oneOf("direct", "relayed"),
          why: S.str(),
        },
        ["set", "between", "path", "why"],
      ),
    ),
    exercises: S.list(
      S.obj(
        {
          id: S.str(NAME, NAME_TEXT),
          title: S.str(),
          hint: S.str(),
          check: S.list(actionShape),
          solve: S.list(actionShape),
        },
        ["id", "title", "hint", "check"],
      ),
    ),
  },
  ["name", "title", "networks", "nodes"],
);

export function listRecipes(): string[] {
  if (!existsSync(recipesDir)) return [];
  return readdirSync(recipesDir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(join(recipesDir, d.name, "recipe.yaml")))
    .map((d) => d.name)
    .sort();
}

function octal(mode: string | undefined, fallback: number): number {
  return mode ? Number.parseInt(mode, 8) : fallback;
}

function toFile(f: { path: string; template?: string; content?: string; mode?: string }): FileSpec {
  return { path: f.path, template: f.template, content: f.content, mode: octal(f.mode, 0o644) };
}

function toAction(a: Record<string, unknown>): Action {
  return {
    node: (a.node as string | undefined) ?? "",
    title: a.title as string | undefined,
    run: a.run as string | undefined,
    file: a.file ? toFile(a.file as never) : undefined,
    wait: a.wait as string | undefined,
    timeout: (a.timeout as number | undefined) ?? 60,
    capture: a.capture as Action["capture"],
    secret: Boolean(a.secret),
    expect: a.expect as Action["expect"],
    when: a.when as string | undefined,
    set: a.set ? Object.fromEntries(Object.entries(a.set as Record<string, unknown>).map(([k, v]) => [k, String(v)])) : undefined,
  };
}

export function toNode(n: Record<string, unknown>): NodeSpec {
  const scalars = (m: unknown) => Object.fromEntries(Object.entries((m as Record<string, unknown>) ?? {}).map(([k, v]) => [k, String(v)]));
  return {
    image: n.image as string,
    container: n.container as string,
    hostname: n.hostname as string,
    role: (n.role as string | undefined) ?? (n.hostname as string),
    interactive: Boolean(n.interactive),
    networks: (n.networks as Record<string, string>) ?? {},
    caps: (n.caps as string[]) ?? [],
    sysctls: scalars(n.sysctls),
    gateway: n.gateway as string | undefined,
    devices: (n.devices as string[]) ?? [],
    env: scalars(n.env),
    command: n.command as string[] | undefined,
    files: ((n.files as never[]) ?? []).map(toFile),
    ready: n.ready as string | undefined,
    diagnose: n.diagnose as string | undefined,
    when: n.when as string | undefined,
  };
}

/** Load, validate and cross-check recipes/<name>/recipe.yaml. Never touches the engine. */
export function loadRecipe(name: string, dir = recipesDir): Recipe {
  const rdir = join(dir, name);
  const file = join(rdir, "recipe.yaml");
  if (!NAME.test(name) || !existsSync(file)) {
    const known = listRecipes();
    throw new UserError(`Unknown recipe "${name}"; the recipes are: ${known.join(", ") || "(none found in recipes/)"}.`);
  }
  const shown = relative(process.cwd(), file).startsWith("..") ? relative(ROOT, file) : relative(process.cwd(), file);
  let parsed: Parsed;
  try {
    parsed = parseYaml(readFileSync(file, "utf8"), shown);
    validate(parsed, recipeShape, shown);
  } catch (e) {
    if (e instanceof SchemaError)
      throw new UserError(`Recipe ${name} is not valid: ${e.problems[0]}`, 2, e.problems.slice(1).join("\n") || undefined);
    throw e;
  }
  const raw = parsed.value as Record<string, unknown>;
  const problems: string[] = [];
  const at = (path: (string | number)[], msg: string) => problems.push(`${shown}:${lineAt(parsed, path)}: ${path.join(".")}: ${msg}`);

  const networks = Object.fromEntries(
    Object.entries((raw.networks as Record<string, Record<string, unknown>>) ?? {}).map(([k, v]) => [
      k,
      {
        subnet: v.subnet as string,
        isolated: v.isolated !== false,
        description: v.description as string | undefined,
      },
    ]),
  );
  const nodes = Object.fromEntries(
    Object.entries((raw.nodes as Record<string, Record<string, unknown>>) ?? {}).map(([k, v]) => [k, toNode(v)]),
  );
  const recipe: Recipe = {
    name: raw.name as string,
    title: raw.title as string,
    summary: (raw.summary as string | undefined) ?? "",
    dir: rdir,
    file: shown,
    guide: raw.guide as string | undefined,
    networks,
    nodes,
    wireguard: raw.wireguard as Recipe["wireguard"],
    tls: raw.tls as Recipe["tls"],
    vars: Object.fromEntries(Object.entries((raw.vars as Record<string, unknown>) ?? {}).map(([k, v]) => [k, String(v)])),
    options: Object.fromEntries(
      Object.entries((raw.options as Record<string, Record<string, unknown>>) ?? {}).map(([k, o]) => [
        k,
        {
          description: o.description as string,
          default: String(o.default),
          apply: ((o.apply as Record<string, unknown>[]) ?? []).map(toAction),
          choices: (o.choices as Recipe["options"][string]["choices"]) ?? {},
        },
      ]),
    ),
    matrix: ((raw.matrix as Record<string, unknown>[]) ?? []).map((m) => ({
      set: Object.fromEntries(Object.entries((m.set as Record<string, unknown>) ?? {}).map(([k, v]) => [k, String(v)])),
      between: m.between as [string, string],
      path: m.path as "direct" | "relayed",
      why: String(m.why ?? "").trim(),
    })),
    overlay: ((raw.overlay as Record<string, unknown>[]) ?? []).map((o) => ({
      between: o.between as [string, string],
      label: (o.label as string | undefined) ?? "",
      kind: (o.kind as "tunnel" | "control" | undefined) ?? "tunnel",
    })),
    setup: ((raw.setup as Record<string, unknown>[]) ?? []).map(toAction),
    exercises: ((raw.exercises as Record<string, unknown>[]) ?? []).map(
      (e): Exercise => ({
        id: e.id as string,
        title: e.title as string,
        hint: String(e.hint ?? "").trim(),
        check: ((e.check as Record<string, unknown>[]) ?? []).map(toAction),
        solve: ((e.solve as Record<string, unknown>[]) ?? []).map(toAction),
      }),
    ),
  };

  // Cross-references the schema cannot see.
  if (recipe.name !== name) at(["name"], `must match the folder name "${name}"`);
  const nodeNames = new Set([
    ...Object.keys(nodes),
    ...Object.values(recipe.options).flatMap((o) => Object.values(o.choices ?? {}).flatMap((c) => Object.keys(c.nodes ?? {}))),
  ]);
  for (const [n, node] of Object.entries(nodes)) {
    for (const [net, ip] of Object.entries(node.networks)) {
      if (!networks[net]) at(["nodes", n, "networks", net], `no network named "${net}" (networks: ${Object.keys(networks).join(", ")})`);
      else if (!ipInCidr(ip, networks[net].subnet)) at(["nodes", n, "networks", net], `${ip} is not inside ${networks[net].subnet}`);
    }
    if (node.gateway) {
      const gw = nodes[node.gateway];
      if (!gw) at(["nodes", n, "gateway"], `no node named "${node.gateway}" (nodes: ${Object.keys(nodes).join(", ")})`);
      else if (!Object.keys(node.networks).some((net) => gw.networks[net]))
        at(["nodes", n, "gateway"], `${node.gateway} shares no network with ${n}`);
    }
    node.files.forEach((f, i) => {
      if (f.template && !existsSync(join(rdir, f.template)))
        at(["nodes", n, "files", i, "template"], `template file ${f.template} does not exist in ${name}/`);
    });
  }
  const checkActions = (list: Action[], path: (string | number)[]) =>
    list.forEach((a, i) => {
      if (a.set) {
        for (const [o, v] of Object.entries(a.set)) {
          const spec = recipe.options[o];
          if (!spec?.apply.length) at([...path, i, "set", o], `no live option named "${o}" (an option with apply)`);
          else if (!spec.choices[v])
            at([...path, i, "set", o], `"${v}" is not one of the choices (${Object.keys(spec.choices).join(", ")})`);
        }
      } else if (!a.node) at([...path, i], 'missing required field "node"');
      else if (!nodeNames.has(a.node)) at([...path, i, "node"], `no node named "${a.node}" (nodes: ${[...nodeNames].join(", ")})`);
      const verbs = [a.run, a.file, a.wait, a.set].filter((x) => x !== undefined).length;
      if (verbs !== 1) at([...path, i], "needs exactly one of run, file, wait, set");
      if (a.file?.template && !existsSync(join(rdir, a.file.template)))
        at([...path, i, "file", "template"], `template file ${a.file.template} does not exist in ${name}/`);
    });
  checkActions(recipe.setup, ["setup"]);
  recipe.exercises.forEach((e, i) => {
    checkActions(e.check, ["exercises", i, "check"]);
    checkActions(e.solve, ["exercises", i, "solve"]);
  });
  recipe.overlay.forEach((o, i) => {
    if (o.between.length !== 2) at(["overlay", i, "between"], "expected two node names");
    for (const n of o.between) if (!nodeNames.has(n)) at(["overlay", i, "between"], `no node named "${n}"`);
  });
  for (const k of recipe.wireguard?.keys ?? []) if (!nodeNames.has(k)) at(["wireguard", "keys"], `no node named "${k}"`);
  if (recipe.tls && !nodeNames.has(recipe.tls.for)) at(["tls", "for"], `no node named "${recipe.tls.for}"`);
  for (const [o, spec] of Object.entries(recipe.options)) {
    if (!spec.choices[spec.default])
      at(["options", o, "default"], `"${spec.default}" is not one of the choices (${Object.keys(spec.choices).join(", ")})`);
    checkActions(spec.apply, ["options", o, "apply"]);
  }
  recipe.matrix.forEach((m, i) => {
    for (const [o, v] of Object.entries(m.set)) {
      const spec = recipe.options[o];
      if (!spec) at(["matrix", i, "set", o], `no option named "${o}" (options: ${Object.keys(recipe.options).join(", ")})`);
      else if (!spec.choices[v]) at(["matrix", i, "set", o], `"${v}" is not one of the choices (${Object.keys(spec.choices).join(", ")})`);
    }
    if (m.between.length !== 2) at(["matrix", i, "between"], "expected two node names");
    for (const n of m.between) if (!nodeNames.has(n)) at(["matrix", i, "between"], `no node named "${n}"`);
  });
  if (problems.length) throw new UserError(`Recipe ${name} is not valid: ${problems[0]}`, 2, problems.slice(1).join("\n") || undefined);
  return recipe;
}

export function ipToInt(ip: string): number {
  return ip.split(".").reduce((acc, o) => acc * 256 + Number(o), 0);
}

export function intToIp(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join(".");
}

export function ipInCidr(ip: string, cidr: string): boolean {
  const [base, bits] = cidr.split("/");
  const size = 2 ** (32 - Number(bits));
  const start = Math.floor(ipToInt(base!) / size) * size;
  const n = ipToInt(ip);
  return n >= start && n < start + size;
}

export function cidrsOverlap(a: string, b: string): boolean {
  const range = (c: string) => {
    const [base, bits] = c.split("/");
    const size = 2 ** (32 - Number(bits));
    const start = Math.floor(ipToInt(base!) / size) * size;
    return [start, start + size - 1] as const;
  };
  const [a0, a1] = range(a);
  const [b0, b1] = range(b);
  return a0 <= b1 && b0 <= a1;
}
