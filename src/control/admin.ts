import { chmodSync, mkdirSync, rmSync } from "node:fs";
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import { dirname } from "node:path";
import type { NodeRec, UserRec } from "./store.ts";
import { type Tailnet, TailnetError } from "./tailnet.ts";

/** What the admin API needs of the server (an interface, so admin.ts does not import server.ts). */
export interface ControlServer {
  readonly tailnet: Tailnet;
  readonly pendingLogins: number;
  approveLogin(id: string, userRef: string): Promise<number>;
}

/**
 * The admin API: JSON over HTTP on a unix socket (mode 0660, root's), never on the network,
 * so it needs no authentication beyond file permissions. The `headscale`-compatible CLI is
 * its only client.
 */

export interface AdminNode {
  id: number;
  machine_key: string;
  node_key: string;
  disco_key: string;
  ip_addresses: string[];
  name: string;
  given_name: string;
  user: AdminUser;
  last_seen?: string;
  expiry?: string;
  created_at: string;
  register_method: string;
  online: boolean;
  expired: boolean;
  ephemeral: boolean;
  approved_routes: string[];
  available_routes: string[];
  subnet_routes: string[];
  tags: string[];
  /** The key it registered with, as Headscale's Node.pre_auth_key (its fields in Headscale's order). */
  pre_auth_key?: AdminNodeKey;
}

export interface AdminNodeKey {
  user: { id: number; name: string };
  id: number;
  key: string;
  reusable: boolean;
  ephemeral: boolean;
  used: boolean;
  expiration: string;
  created_at: string;
  acl_tags: string[];
}

function adminNodeKey(t: Tailnet, id: number | undefined): AdminNodeKey | undefined {
  const k = t.preAuthKeys().find((p) => p.id === id);
  if (!k) return undefined;
  return {
    user: { id: k.userId, name: t.user(k.userId)?.name ?? "" },
    id: k.id,
    key: `${k.prefix}-***`,
    reusable: k.reusable,
    ephemeral: k.ephemeral,
    used: k.used,
    expiration: k.expiration,
    created_at: k.createdAt,
    acl_tags: k.tags ?? [],
  };
}

/** A user as Headscale's CLI prints one (v1.User): provider fields only for OIDC users. */
export interface AdminUser {
  id: number;
  name: string;
  created_at?: string;
  display_name?: string;
  email?: string;
  provider_id?: string;
  provider?: string;
}

export function adminUser(u: UserRec): AdminUser {
  return {
    id: u.id,
    name: u.name,
    created_at: u.createdAt,
    ...(u.displayName ? { display_name: u.displayName } : {}),
    ...(u.email ? { email: u.email } : {}),
    ...(u.providerId ? { provider_id: u.providerId } : {}),
    ...(u.provider ? { provider: u.provider } : {}),
  };
}

const REGISTER_METHODS = { authkey: "REGISTER_METHOD_AUTH_KEY", cli: "REGISTER_METHOD_CLI", oidc: "REGISTER_METHOD_OIDC" } as const;

export function adminNode(ctl: ControlServer, n: NodeRec): AdminNode {
  const t = ctl.tailnet;
  const u = t.user(n.userId);
  const key = adminNodeKey(t, n.preAuthKeyId);
  return {
    id: n.id,
    machine_key: n.machineKey,
    node_key: n.nodeKey,
    disco_key: n.discoKey ?? "",
    ip_addresses: [n.ipv4, n.ipv6],
    name: String(n.hostinfo.Hostname ?? n.givenName),
    given_name: n.givenName,
    user: u ? adminUser(u) : { id: n.userId, name: "" },
    ...(n.lastSeen ? { last_seen: n.lastSeen } : {}),
    ...(n.expiry ? { expiry: n.expiry } : {}),
    created_at: n.createdAt,
    register_method: REGISTER_METHODS[n.registerMethod],
    online: t.isOnline(n.id),
    expired: t.isExpired(n),
    ephemeral: n.ephemeral,
    approved_routes: n.approvedRoutes,
    available_routes: t.availableRoutes(n),
    // As Headscale's "Serving (Primary)": the prefixes it is primary for, and its approved exit routes.
    subnet_routes: t.offeredRoutes(n),
    tags: n.tags ?? [],
    ...(key ? { pre_auth_key: key } : {}),
  };
}

type Handler = (body: Record<string, unknown>, params: string[]) => unknown | Promise<unknown>;

function routes(ctl: ControlServer): [string, RegExp, Handler][] {
  const t = ctl.tailnet;
  const id = (s: string | undefined) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n <= 0) throw new TailnetError(`invalid node id ${JSON.stringify(s)}`);
    return n;
  };
  return [
    ["GET", /^\/health$/, () => ({ status: "pass", nodes: t.nodes().length, pending_logins: ctl.pendingLogins })],
    ["GET", /^\/users$/, () => t.users()],
    ["POST", /^\/users$/, (b) => t.createUser(String(b.name ?? ""))],
    [
      "POST",
      /^\/preauthkeys$/,
      (b) => {
        const { key, rec } = t.createPreAuthKey(String(b.user ?? ""), {
          reusable: Boolean(b.reusable),
          ephemeral: Boolean(b.ephemeral),
          expiresInMs: typeof b.expiresInMs === "number" ? b.expiresInMs : undefined,
          tags: Array.isArray(b.tags) ? b.tags.map(String) : [],
        });
        const { hash: _h, ...shown } = rec;
        return { ...shown, key };
      },
    ],
    ["GET", /^\/preauthkeys$/, () => t.preAuthKeys().map(({ hash: _h, ...k }) => k)],
    [
      "POST",
      /^\/preauthkeys\/expire$/,
      (b) => {
        const { hash: _h, ...k } = t.expirePreAuthKey(String(b.key ?? ""));
        return k;
      },
    ],
    [
      "POST",
      /^\/preauthkeys\/delete$/,
      (b) => {
        const { hash: _h, ...k } = t.deletePreAuthKey(String(b.key ?? ""));
        return k;
      },
    ],
    [
      "GET",
      /^\/policy$/,
      () => {
        const p = t.policy();
        if (!p) throw new TailnetError("no policy is set: every node may reach every other (allow-all)");
        return { policy: p.text };
      },
    ],
    ["PUT", /^\/policy$/, (b) => ({ updated: Boolean(t.setPolicy(String(b.policy ?? ""))) })],
    ["POST", /^\/policy\/check$/, (b) => ({ valid: Boolean(t.checkPolicy(String(b.policy ?? ""))) })],
    ["GET", /^\/nodes$/, () => t.nodes().map((n) => adminNode(ctl, n))],
    ["POST", /^\/nodes\/(\d+)\/approve-routes$/, (b, [i]) => adminNode(ctl, t.approveRoutes(id(i), (b.routes as string[]) ?? []))],
    ["POST", /^\/nodes\/(\d+)\/expire$/, (_b, [i]) => adminNode(ctl, t.expire(id(i)))],
    ["POST", /^\/nodes\/(\d+)\/rename$/, (b, [i]) => adminNode(ctl, t.rename(id(i), String(b.name ?? "")))],
    ["DELETE", /^\/nodes\/(\d+)$/, (_b, [i]) => adminNode(ctl, t.delete(id(i)))],
    [
      "POST",
      /^\/nodes\/register$/,
      async (b) => adminNode(ctl, t.mustNode(await ctl.approveLogin(String(b.key ?? ""), String(b.user ?? "")))),
    ],
  ];
}

export async function startAdmin(ctl: ControlServer, socketPath: string): Promise<http.Server> {
  const table = routes(ctl);
  const server = http.createServer(async (req: IncomingMessage, res: ServerResponse) => {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    try {
      const path = new URL(req.url ?? "/", "http://admin").pathname;
      const route = table.find(([m, re]) => m === req.method && re.test(path));
      if (!route) return send(404, { error: `no admin route ${req.method} ${path}` });
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const text = Buffer.concat(chunks).toString() || "{}";
      const body = JSON.parse(text) as Record<string, unknown>;
      const result = await route[2](body, route[1].exec(path)!.slice(1));
      await ctl.tailnet.committed();
      send(200, result);
    } catch (e) {
      send(e instanceof TailnetError || e instanceof SyntaxError ? 400 : 500, { error: (e as Error).message });
    }
  });
  mkdirSync(dirname(socketPath), { recursive: true, mode: 0o750 });
  rmSync(socketPath, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(socketPath, () => resolve());
  });
  chmodSync(socketPath, 0o660);
  return server;
}

/** A call to the admin API, for the CLI. */
export function adminCall<T>(socketPath: string, method: string, path: string, body?: unknown): Promise<T> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, method, path, headers: { "content-type": "application/json" } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString();
        let parsed: unknown;
        try {
          parsed = JSON.parse(text);
        } catch {
          return reject(new Error(`the control server answered ${res.statusCode} with non-JSON: ${text.slice(0, 200)}`));
        }
        if (res.statusCode !== 200) return reject(new TailnetError((parsed as { error?: string }).error ?? `status ${res.statusCode}`));
        resolve(parsed as T);
      });
    });
    req.on("error", (e: NodeJS.ErrnoException) =>
      reject(
        new TailnetError(
          ["ENOENT", "ECONNREFUSED", "EPIPE", "ECONNRESET"].includes(e.code ?? "")
            ? `cannot reach the control server at ${socketPath} (${e.code}): is it running?`
            : `admin socket ${socketPath}: ${e.message}`,
        ),
      ),
    );
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}
