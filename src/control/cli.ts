import { type AdminNode, adminCall } from "./admin.ts";
import { DEFAULT_ADMIN_SOCKET, DEFAULT_CONFIG_PATH, loadConfig } from "./config.ts";
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
  preauthkeys create -u USER [--reusable] [--ephemeral] [-e 1h] | preauthkeys list | preauthkeys expire KEY
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
  const cfg = typeof flags.config === "string" ? flags.config : process.env.WG3_CONTROL_CONFIG || DEFAULT_CONFIG_PATH;
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

/** Run one CLI invocation; returns what to print. Throws TailnetError for user mistakes. */
export async function runCli(argv: string[]): Promise<string> {
  const { words, flags } = parseArgs(argv);
  const [group, verb, ...rest] = words;
  if (!group || flags.help || group === "help") return `${HELP}\n`;
  const sock = socketPath(flags);
  const call = <T>(method: string, path: string, body?: unknown) => adminCall<T>(sock, method, path, body);
  const key = `${group} ${verb ?? ""}`.trim();

  switch (key) {
    case "version":
      return `${CLI_VERSION}\n`;
    case "health": {
      const h = await call<{ status: string }>("GET", "/health");
      return output(flags, h, () => "");
    }
    case "users create":
    case "user create": {
      if (!rest[0]) throw new TailnetError("usage: headscale users create NAME");
      const u = await call<UserRec>("POST", "/users", { name: rest[0] });
      return output(flags, u, () => "User created\n");
    }
    case "users list":
    case "user list":
    case "users ls": {
      const us = await call<UserRec[]>("GET", "/users");
      const j = us.map((u) => ({ id: u.id, name: u.name, created_at: u.createdAt }));
      return output(flags, j, () =>
        table(
          ["ID", "Name", "Username", "Email", "Created"],
          us.map((u) => [u.id, "", u.name, "", when(u.createdAt)]),
        ),
      );
    }
    case "preauthkeys create":
    case "preauthkey create": {
      if (typeof flags.user !== "string") throw new TailnetError("give the user with -u ID (see `headscale users list`)");
      const expiresInMs = parseDuration(typeof flags.expiration === "string" ? flags.expiration : "1h");
      const k = await call<PreAuthKeyRec & { key: string }>("POST", "/preauthkeys", {
        user: flags.user,
        reusable: flags.reusable === true,
        ephemeral: flags.ephemeral === true,
        expiresInMs,
      });
      return output(
        flags,
        {
          id: k.id,
          key: k.key,
          user: k.userId,
          reusable: k.reusable,
          ephemeral: k.ephemeral,
          used: k.used,
          expiration: k.expiration,
          created_at: k.createdAt,
        },
        () => `${k.key}\n`,
      );
    }
    case "preauthkeys list":
    case "preauthkey list": {
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
      }));
      return output(flags, j, () =>
        table(
          ["ID", "Key/Prefix", "Reusable", "Ephemeral", "Used", "Expiration", "Created", "Owner"],
          ks.map((k) => [k.id, `${k.prefix}-***`, k.reusable, k.ephemeral, k.used, when(k.expiration), when(k.createdAt), owner(k.userId)]),
        ),
      );
    }
    case "preauthkeys expire": {
      if (!rest[0]) throw new TailnetError("usage: headscale preauthkeys expire KEY-OR-ID");
      await call("POST", "/preauthkeys/expire", { key: rest[0] });
      return "Key expired\n";
    }
    case "nodes list":
    case "node list":
    case "nodes ls": {
      const ns = await call<AdminNode[]>("GET", "/nodes");
      return output(flags, ns, () =>
        table(
          [
            "ID",
            "Hostname",
            "Name",
            "MachineKey",
            "NodeKey",
            "User",
            "IP addresses",
            "Ephemeral",
            "Last seen",
            "Expiration",
            "Connected",
            "Expired",
          ],
          ns.map((n) => [
            n.id,
            n.name,
            n.given_name,
            `[${n.machine_key.slice(5, 10)}]`,
            `[${n.node_key.slice(8, 13)}]`,
            n.user.name,
            n.ip_addresses.join(", "),
            n.ephemeral,
            when(n.last_seen),
            when(n.expiry) || "N/A",
            n.online ? "online" : "offline",
            n.expired ? "yes" : "no",
          ]),
        ),
      );
    }
    case "nodes list-routes":
    case "node list-routes":
    case "routes list": {
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
    case "nodes approve-routes":
    case "node approve-routes": {
      const id = nodeId(flags);
      const routes =
        typeof flags.routes === "string"
          ? flags.routes
              .split(",")
              .map((s) => s.trim())
              .filter(Boolean)
          : [];
      const n = await call<AdminNode>("POST", `/nodes/${id}/approve-routes`, { routes });
      return output(flags, n, () => `Node updated\n`);
    }
    case "nodes expire":
    case "node expire": {
      const n = await call<AdminNode>("POST", `/nodes/${nodeId(flags)}/expire`);
      return output(flags, n, () => "Node expired\n");
    }
    case "nodes delete":
    case "node delete": {
      const n = await call<AdminNode>("DELETE", `/nodes/${nodeId(flags)}`);
      return output(flags, n, () => "Node deleted\n");
    }
    case "nodes rename":
    case "node rename": {
      if (!rest[0]) throw new TailnetError("usage: headscale nodes rename -i ID NEWNAME");
      const n = await call<AdminNode>("POST", `/nodes/${nodeId(flags)}/rename`, { name: rest[0] });
      return output(flags, n, () => "Node renamed\n");
    }
    case "nodes register":
    case "auth register": {
      const id = flags["auth-id"] ?? flags.key;
      if (typeof id !== "string" || typeof flags.user !== "string")
        throw new TailnetError("usage: headscale auth register --user USER --auth-id ID (the ID is the last part of the login URL)");
      const n = await call<AdminNode>("POST", "/nodes/register", { key: id, user: flags.user });
      return output(flags, n, () => `Node ${n.given_name} registered\n`);
    }
    default:
      throw new TailnetError(`unknown command "${words.join(" ")}"; run headscale --help`);
  }
}
