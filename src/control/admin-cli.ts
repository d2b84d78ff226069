import { readFileSync } from "node:fs";
import { type AdminNode, adminCall, adminUser } from "./admin.ts";
import { DEFAULT_ADMIN_SOCKET, defaultConfigPath, loadConfig } from "./config.ts";
import type { PreAuthKeyRec, UserRec } from "./store.ts";
import { TailnetError } from "./tailnet.ts";

/**
 * A `headscale`-compatible subset of commands, so the workshop's commands work unchanged
 * against the builtin server: users, preauthkeys, nodes (list, list-routes, approve-routes,
 * expire, delete, rename, register), auth register, health, version. Output follows
 * Headscale's: a table by default, `-o json` with the same field names.
 */

export const CLI_VERSION = "wg3-control (headscale-compatible CLI)";

const HELP = `Usage: headscale <command> [flags]   (the wg-3-ways builtin control server's CLI)

Commands:
  users create NAME | users list
  preauthkeys create -u USER [--reusable] [--ephemeral] [-e 1h] [--tags tag:a,tag:b] | preauthkeys list
  preauthkeys expire -i ID | preauthkeys delete -i ID
  policy get | policy set -f FILE | policy check -f FILE   (HuJSON ACL policy; set runs its tests block)
  nodes list | nodes list-routes
  nodes approve-routes -i ID -r PREFIX[,PREFIX]
  nodes expire -i ID | nodes delete -i ID | nodes rename -i ID NEWNAME
  nodes register --user USER --key ID   (also: auth register --user USER --auth-id ID)
  health | version

Global flags: -o json|json-line|yaml (machine-readable output), -c CONFIG, --force
The CLI talks to the server over its local admin socket (unix_socket in the config).`;

interface Parsed {
  words: string[];
  flags: Record<string, string | true>;
}

const SHORT: Record<string, string> = {
  o: "output",
  u: "user",
  i: "identifier",
  r: "routes",
  e: "expiration",
  c: "config",
  k: "key",
  n: "name",
  f: "file",
};
const BOOLEAN = new Set(["reusable", "ephemeral", "force", "help"]);

export function parseArgs(argv: string[]): Parsed {
  const words: string[] = [];
  const flags: Record<string, string | true> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const m = /^--?([a-zA-Z-]+)(?:=(.*))?$/.exec(a);
    if (!m) {
      words.push(a);
      continue;
    }
    const name = a.startsWith("--") ? m[1]! : (SHORT[m[1]!] ?? m[1]!);
    if (m[2] !== undefined) flags[name] = m[2];
    else if (BOOLEAN.has(name) || name === "h") flags[name === "h" ? "help" : name] = true;
    else {
      const v = argv[++i];
      if (v === undefined) throw new TailnetError(`flag ${a} needs a value`);
      flags[name] = v;
    }
  }
  return { words, flags };
}

/** Headscale's durations: 30m, 24h, 90d, 1h30m. */
export function parseDuration(s: string): number {
  const units: Record<string, number> = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 604800e3 };
  let total = 0;
  let rest = s.trim();
  if (!rest) throw new TailnetError("empty duration");
  while (rest) {
    const m = /^(\d+(?:\.\d+)?)([smhdw])/.exec(rest);
    if (!m) throw new TailnetError(`invalid duration ${JSON.stringify(s)}: use e.g. 30m, 24h, 7d`);
    total += Number(m[1]) * units[m[2]!]!;
    rest = rest.slice(m[0].length);
  }
  return total;
}

function table(headers: string[], rows: (string | number | boolean)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, c) => Math.max(...cells.map((r) => r[c]!.length)));
  return `${cells
    .map((r) =>
      r
        .map((v, c) => v.padEnd(widths[c]!))
        .join(" | ")
        .trimEnd(),
    )
    .join("\n")}\n`;
}

const when = (iso?: string) => (iso ? iso.replace("T", " ").replace(/\.\d+Z$|Z$/, "") : "");

function output(flags: Parsed["flags"], value: unknown, human: () => string): string {
  switch (flags.output) {
    case undefined:
    case true:
    case "":
      return human();
    case "json":
      return `${JSON.stringify(value, null, "\t")}\n`;
    case "json-line":
      return `${JSON.stringify(value)}\n`;
    case "yaml":
      return `${JSON.stringify(value, null, 2)}\n`; // JSON is YAML
    default:
      throw new TailnetError(`unknown output format ${JSON.stringify(flags.output)}: use json, json-line or yaml`);
  }
}

function socketPath(flags: Parsed["flags"]): string {
  if (process.env.WG3_CONTROL_SOCKET) return process.env.WG3_CONTROL_SOCKET;
  const cfg = typeof flags.config === "string" ? flags.config : defaultConfigPath();
  try {
    return loadConfig(cfg).adminSocket;
  } catch {
    return DEFAULT_ADMIN_SOCKET;
  }
}

function nodeId(flags: Parsed["flags"]): number {
  const v = flags.identifier;
  if (typeof v !== "string" || !/^\d+$/.test(v)) throw new TailnetError("give the node with -i ID (see `headscale nodes list`)");
  return Number(v);
}

interface Invocation {
  flags: Parsed["flags"];
  rest: string[];
  call: <T>(method: string, path: string, body?: unknown) => Promise<T>;
}

type Verb = (inv: Invocation) => Promise<string>;

async function health({ flags, call }: Invocation): Promise<string> {
  return output(flags, await call<{ status: string }>("GET", "/health"), () => "");
}

async function createUser({ flags, rest, call }: Invocation): Promise<string> {
  if (!rest[0]) throw new TailnetError("usage: headscale users create NAME");
  return output(flags, await call<UserRec>("POST", "/users", { name: rest[0] }), () => "User created\n");
}

async function listUsers({ flags, call }: Invocation): Promise<string> {
  const us = await call<UserRec[]>("GET", "/users");
  return output(flags, us.map(adminUser), () =>
    table(
      ["ID", "Name", "Username", "Email", "Created"],
      us.map((u) => [u.id, u.displayName ?? "", u.name, u.email ?? "", when(u.createdAt)]),
    ),
  );
}

async function createPreAuthKey({ flags, call }: Invocation): Promise<string> {
  if (typeof flags.user !== "string") throw new TailnetError("give the user with -u ID (see `headscale users list`)");
  const expiresInMs = parseDuration(typeof flags.expiration === "string" ? flags.expiration : "1h");
  const k = await call<PreAuthKeyRec & { key: string }>("POST", "/preauthkeys", {
    user: flags.user,
    reusable: flags.reusable === true,
    ephemeral: flags.ephemeral === true,
    expiresInMs,
    tags:
      typeof flags.tags === "string"
        ? flags.tags
            .split(",")
            .map((t) => t.trim())
            .filter(Boolean)
        : [],
  });
  const j = {
    id: k.id,
    key: k.key,
    user: k.userId,
    reusable: k.reusable,
    ephemeral: k.ephemeral,
    used: k.used,
    expiration: k.expiration,
    created_at: k.createdAt,
    acl_tags: k.tags ?? [],
  };
  return output(flags, j, () => `${k.key}\n`);
}

async function listPreAuthKeys({ flags, call }: Invocation): Promise<string> {
  const [ks, us] = await Promise.all([call<PreAuthKeyRec[]>("GET", "/preauthkeys"), call<UserRec[]>("GET", "/users")]);
  const owner = (id: number) => us.find((u) => u.id === id)?.name ?? String(id);
  const j = ks.map((k) => ({
    id: k.id,
    key: `${k.prefix}-***`,
    user: owner(k.userId),
    reusable: k.reusable,
    ephemeral: k.ephemeral,
    used: k.used,
    expiration: k.expiration,
    created_at: k.createdAt,
    acl_tags: k.tags ?? [],
  }));
  return output(flags, j, () =>
    table(
      ["ID", "Key/Prefix", "Reusable", "Ephemeral", "Used", "Expiration", "Created", "Owner", "Tags"],
      ks.map((k) => [
        k.id,
        `${k.prefix}-***`,
        k.reusable,
        k.ephemeral,
        k.used,
        when(k.expiration),
        when(k.createdAt),
        owner(k.userId),
        (k.tags ?? []).join(","),
      ]),
    ),
  );
}

/** Headscale 0.29 names a key by `-i ID` (long form `--id`); a key or its prefix as the argument also works, as before. */
function preAuthKeyRef(flags: Parsed["flags"], rest: string[], verb: string): string {
  const id = flags.identifier ?? flags.id;
  const ref = typeof id === "string" ? id : rest[0];
  if (!ref) throw new TailnetError(`usage: headscale preauthkeys ${verb} -i ID (see \`headscale preauthkeys list\`)`);
  return ref;
}

async function expirePreAuthKey({ flags, rest, call }: Invocation): Promise<string> {
  await call("POST", "/preauthkeys/expire", { key: preAuthKeyRef(flags, rest, "expire") });
  return "Key expired\n";
}

async function deletePreAuthKey({ flags, rest, call }: Invocation): Promise<string> {
  await call("POST", "/preauthkeys/delete", { key: preAuthKeyRef(flags, rest, "delete") });
  return "Key deleted\n";
}

const NODE_COLUMNS = [
  "ID",
  "Hostname",
  "Name",
  "MachineKey",
  "NodeKey",
  "User",
  "Tags",
  "IP addresses",
  "Ephemeral",
  "Last seen",
  "Expiration",
  "Connected",
  "Expired",
];

async function listNodes({ flags, call }: Invocation): Promise<string> {
  const ns = await call<AdminNode[]>("GET", "/nodes");
  const row = (n: AdminNode) => [
    n.id,
    n.name,
    n.given_name,
    `[${n.machine_key.slice(5, 10)}]`,
    `[${n.node_key.slice(8, 13)}]`,
    n.user.name,
    n.tags.join(","),
    n.ip_addresses.join(", "),
    n.ephemeral,
    when(n.last_seen),
    when(n.expiry) || "N/A",
    n.online ? "online" : "offline",
    n.expired ? "yes" : "no",
  ];
  return output(flags, ns, () => table(NODE_COLUMNS, ns.map(row)));
}

async function listRoutes({ flags, call }: Invocation): Promise<string> {
  const ns = (await call<AdminNode[]>("GET", "/nodes")).filter((n) => n.available_routes.length || n.approved_routes.length);
  const j = ns.map((n) => ({
    id: n.id,
    given_name: n.given_name,
    approved_routes: n.approved_routes,
    available_routes: n.available_routes,
    subnet_routes: n.subnet_routes,
  }));
  return output(flags, j, () =>
    table(
      ["ID", "Hostname", "Approved", "Available", "Serving (Primary)"],
      ns.map((n) => [n.id, n.given_name, n.approved_routes.join(", "), n.available_routes.join(", "), n.subnet_routes.join(", ")]),
    ),
  );
}

async function approveRoutes({ flags, call }: Invocation): Promise<string> {
  const routes =
    typeof flags.routes === "string"
      ? flags.routes
          .split(",")
          .map((r) => r.trim())
          .filter(Boolean)
      : [];
  const n = await call<AdminNode>("POST", `/nodes/${nodeId(flags)}/approve-routes`, { routes });
  return output(flags, n, () => "Node updated\n");
}

async function expireNode({ flags, call }: Invocation): Promise<string> {
  return output(flags, await call<AdminNode>("POST", `/nodes/${nodeId(flags)}/expire`), () => "Node expired\n");
}

async function deleteNode({ flags, call }: Invocation): Promise<string> {
  return output(flags, await call<AdminNode>("DELETE", `/nodes/${nodeId(flags)}`), () => "Node deleted\n");
}

async function renameNode({ flags, rest, call }: Invocation): Promise<string> {
  if (!rest[0]) throw new TailnetError("usage: headscale nodes rename -i ID NEWNAME");
  return output(flags, await call<AdminNode>("POST", `/nodes/${nodeId(flags)}/rename`, { name: rest[0] }), () => "Node renamed\n");
}

async function registerNode({ flags, call }: Invocation): Promise<string> {
  const id = flags["auth-id"] ?? flags.key;
  if (typeof id !== "string" || typeof flags.user !== "string")
    throw new TailnetError("usage: headscale auth register --user USER --auth-id ID (the ID is the last part of the login URL)");
  const n = await call<AdminNode>("POST", "/nodes/register", { key: id, user: flags.user });
  return output(flags, n, () => `Node ${n.given_name} registered\n`);
}

function policyText(flags: Parsed["flags"]): string {
  if (typeof flags.file !== "string") throw new TailnetError("give the policy file with -f FILE (HuJSON)");
  try {
    return readFileSync(flags.file, "utf8");
  } catch (e) {
    throw new TailnetError(`cannot read the policy file ${flags.file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** The file's name in a policy error, as Headscale names what it refused. */
async function withFile<T>(flags: Parsed["flags"], f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (e instanceof TailnetError) throw new TailnetError(`${flags.file}: ${e.message}`);
    throw e;
  }
}

async function getPolicy({ flags, call }: Invocation): Promise<string> {
  const p = await call<{ policy: string }>("GET", "/policy");
  return output(flags, p, () => (p.policy.endsWith("\n") ? p.policy : `${p.policy}\n`));
}

async function setPolicy({ flags, call }: Invocation): Promise<string> {
  const policy = policyText(flags);
  await withFile(flags, () => call("PUT", "/policy", { policy }));
  return "Policy updated.\n";
}

async function checkPolicy({ flags, call }: Invocation): Promise<string> {
  const policy = policyText(flags);
  await withFile(flags, () => call("POST", "/policy/check", { policy }));
  return "Policy is valid\n";
}

/** Each command as headscale spells it, with the singular and short forms it also accepts. */
const VERBS: [string[], Verb][] = [
  [["version"], async () => `${CLI_VERSION}\n`],
  [["health"], health],
  [["users create", "user create"], createUser],
  [["users list", "user list", "users ls"], listUsers],
  [["preauthkeys create", "preauthkey create"], createPreAuthKey],
  [["preauthkeys list", "preauthkey list"], listPreAuthKeys],
  [["preauthkeys expire", "preauthkey expire"], expirePreAuthKey],
  [["preauthkeys delete", "preauthkey delete"], deletePreAuthKey],
  [["nodes list", "node list", "nodes ls"], listNodes],
  [["nodes list-routes", "node list-routes", "routes list"], listRoutes],
  [["nodes approve-routes", "node approve-routes"], approveRoutes],
  [["nodes expire", "node expire"], expireNode],
  [["nodes delete", "node delete"], deleteNode],
  [["nodes rename", "node rename"], renameNode],
  [["nodes register", "auth register"], registerNode],
  [["policy get"], getPolicy],
  [["policy set"], setPolicy],
  [["policy check"], checkPolicy],
];

/** Run one CLI invocation; returns what to print. Throws TailnetError for user mistakes. */
export async function runCli(argv: string[]): Promise<string> {
  const { words, flags } = parseArgs(argv);
  const [group, verb, ...rest] = words;
  if (!group || flags.help || group === "help") return `${HELP}\n`;
  const sock = socketPath(flags);
  const key = `${group} ${verb ?? ""}`.trim();
  const handler = VERBS.find(([names]) => names.includes(key))?.[1];
  if (!handler) throw new TailnetError(`unknown command "${words.join(" ")}"; run headscale --help`);
  return handler({ flags, rest, call: (method, path, body) => adminCall(sock, method, path, body) });
}
