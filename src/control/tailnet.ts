import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  type Compiled,
  canOwnTag,
  compileAll,
  EXIT_ROUTES,
  type Policy,
  PolicyError,
  type PolicyNode,
  parsePolicy,
  runTests,
} from "./policy.ts";
import type { NodeRec, PreAuthKeyRec, RecordRef, State, StateStore, UserRec } from "./store.ts";
import { capver, hostinfo as decodeHostinfo, endpoint, type Hostinfo, key, list, RequestError } from "./validate.ts";

/**
 * The tailnet: users, pre-auth keys, nodes with their addresses, names and routes, and who is
 * online. Pure bookkeeping; the HTTP layer (server.ts) turns it into protocol messages. Every
 * mutation goes through `changed()`, which persists (group commit) and tells listeners which
 * nodes' views changed, so each map stream can send just those.
 */

export class TailnetError extends Error {}

export interface TailnetOptions {
  v4Prefix: string;
  v6Prefix: string;
  baseDomain: string;
  /** Key expiry (ms) of every node a person owns, from its login (Headscale's node.expiry); none if 0 or unset. */
  nodeExpiry?: number;
  now?: () => Date;
  log?: (msg: string) => void;
}

export type ChangeListener = (changed: Set<number>, removed: Set<number>) => void;

const ZERO_TIME = "0001-01-01T00:00:00Z";
const USER_NAME = /^[a-zA-Z0-9][a-zA-Z0-9._@-]{0,62}$/;

/** The name clients show for a user: the email an OIDC login stored, else the user name (Headscale's Username()). */
export function loginName(u: UserRec): string {
  return u.email || u.name;
}
export const isZeroTime = (t: string | undefined): boolean => !t || t.startsWith("0001-01-01");

/** A DNS label from a hostname, as MagicDNS shows it: lowercase a-z 0-9 and dashes, <= 63. */
export function dnsLabel(hostname: string): string {
  const l = hostname
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 63)
    .replace(/-+$/, "");
  return l || "node";
}

function ipv4ToInt(ip: string): number {
  return ip.split(".").reduce((a, o) => a * 256 + Number(o), 0);
}
function intToIpv4(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join(".");
}

/** Sequential allocation, as Headscale's `allocation: sequential`: the n-th host of each prefix. */
export function nthAddresses(v4Prefix: string, v6Prefix: string, n: number): { ipv4: string; ipv6: string } {
  const [v4net, v4bits] = v4Prefix.split("/");
  const size = 2 ** (32 - Number(v4bits));
  if (n <= 0 || n >= size - 1) throw new TailnetError(`the address pool ${v4Prefix} is exhausted`);
  const ipv4 = intToIpv4(ipv4ToInt(v4net!) + n);
  const v6base = v6Prefix.split("/")[0]!.replace(/::$/, "");
  return { ipv4, ipv6: `${v6base}::${n.toString(16)}` };
}

export const hashKey = (key: string): string => createHash("sha256").update(key).digest("hex");

export class Tailnet {
  private state: State;
  private listeners = new Set<ChangeListener>();
  private online = new Set<number>();
  private primaries = new Map<string, number>();
  private saveTimer: NodeJS.Immediate | undefined;
  private saving: Promise<void> | undefined;
  private saveWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private dirty = new Set<RecordRef>();
  private readonly now: () => Date;
  /** The ACL policy in force (none: allow-all), and what it compiles to for the current nodes. */
  private policyInForce: Policy | undefined;
  private compiledCache: Map<number, Compiled> | undefined;

  constructor(
    private readonly store: StateStore,
    readonly opts: TailnetOptions,
  ) {
    this.state = store.load();
    this.now = opts.now ?? (() => new Date());
    for (const n of this.state.nodes) this.revalidate(n);
    this.electPrimaries();
    this.loadPolicy();
  }

  // ---- ACL policy ----

  private get policyFile(): string {
    return join(this.store.dir, "policy.hujson");
  }

  /** A stored policy is loaded without its tests (as Headscale at boot), so a deleted user cannot lock the server out. */
  private loadPolicy(): void {
    if (!existsSync(this.policyFile)) return;
    try {
      this.policyInForce = parsePolicy(readFileSync(this.policyFile, "utf8"));
    } catch (e) {
      this.opts.log?.(`policy: the stored policy does not parse (${(e as Error).message}); allowing all until one is set`);
    }
  }

  policy(): Policy | undefined {
    return this.policyInForce;
  }

  /** Parse, validate and run the tests of a policy against the current nodes, without applying it. */
  checkPolicy(text: string): Policy {
    try {
      const p = parsePolicy(text);
      runTests(p, this.policyNodes());
      return p;
    } catch (e) {
      if (e instanceof PolicyError) throw new TailnetError(e.message);
      throw e;
    }
  }

  /** Put a policy in force (stored atomically first); every node's filter and peers are recomputed. */
  setPolicy(text: string): Policy {
    const p = this.checkPolicy(text);
    const tmp = `${this.policyFile}.tmp`;
    writeFileSync(tmp, text, { mode: 0o600 });
    renameSync(tmp, this.policyFile);
    this.policyInForce = p;
    this.changed(
      this.state.nodes.map((n) => n.id),
      [],
      false,
    );
    return p;
  }

  policyNodes(): PolicyNode[] {
    return this.state.nodes.map((n) => ({
      id: n.id,
      ips: [n.ipv4, n.ipv6],
      user: this.user(n.userId)?.name ?? "",
      ...(this.user(n.userId)?.email ? { email: this.user(n.userId)!.email } : {}),
      tags: n.tags ?? [],
      subnetRoutes: this.servableRoutes(n),
      exit: this.exitRoutes(n).length > 0,
      offered: this.offeredRoutes(n),
    }));
  }

  /** Each node's packet filter, visible peers and their routes under the policy in force (cached until the next change). */
  compiled(): Map<number, Compiled> {
    this.compiledCache ??= compileAll(this.policyInForce, this.policyNodes());
    return this.compiledCache;
  }

  /** Tags a node asks for (`--advertise-tags`) that its user may not own; Headscale's sentence when any. */
  private refuseTags(requested: string[] | undefined, userId: number): void {
    if (!requested?.length) return;
    const p = this.policyInForce;
    const user = this.user(userId)?.name ?? "";
    const bad = requested.filter((t) => !p || !canOwnTag(p, t, user));
    if (bad.length) throw new TailnetError(`requested tags [${bad.join(" ")}] are invalid or not permitted`);
  }

  /**
   * State written by an older server may hold what clients sent unchecked (a bad disco key,
   * endpoint, capver or Hostinfo field), which would break every peer's netmap again after a
   * restart: decode each such field as if it came from a client, and drop what fails.
   */
  private revalidate(n: NodeRec): void {
    const check = <T>(what: string, f: () => T, dflt: T): T => {
      try {
        return f();
      } catch (e) {
        if (!(e instanceof RequestError)) throw e;
        this.opts.log?.(`state: node ${n.id}: dropped a stored ${what} that does not decode (${e.message}); the client sends it again`);
        return dflt;
      }
    };
    n.hostinfo = check("Hostinfo", () => decodeHostinfo(n.hostinfo, "Hostinfo"), {});
    n.endpoints = check("endpoint list", () => list(endpoint, 64)(n.endpoints, "Endpoints"), []);
    n.discoKey = check("disco key", () => (n.discoKey === undefined ? undefined : key("discokey")(n.discoKey, "DiscoKey")), undefined);
    n.cap = check("capability version", () => capver(n.cap, "Cap"), 0);
  }

  // ---- change propagation and persistence ----

  onChange(l: ChangeListener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  /**
   * Persist soon (changes in one tick share one flush) and notify listeners now. With
   * `persist`, the given nodes' records are written, plus `records` (users, keys) and meta.
   */
  private changed(nodes: Iterable<number> = [], removed: Iterable<number> = [], persist = true, records: RecordRef[] = []): void {
    const c = new Set(nodes);
    const r = new Set(removed);
    this.compiledCache = undefined;
    if (persist) {
      for (const id of [...c, ...r]) this.dirty.add(`nodes:${id}`);
      for (const ref of records) this.dirty.add(ref);
      this.dirty.add("meta");
      this.scheduleSave();
    }
    for (const id of this.electPrimaries()) c.add(id);
    if (c.size || r.size) for (const l of this.listeners) l(c, r);
  }

  private scheduleSave(): void {
    this.saveTimer ??= setImmediate(() => void this.flush().catch(() => {}));
  }

  /**
   * Write what changed so far, as one commit after any commit in flight; waiters of
   * `committed()` settle with it. A failed commit keeps its records dirty for the next one.
   */
  async flush(): Promise<void> {
    if (this.saveTimer) clearImmediate(this.saveTimer);
    this.saveTimer = undefined;
    while (this.saving) await this.saving.catch(() => {});
    const dirty = this.dirty;
    const waiters = this.saveWaiters;
    this.dirty = new Set();
    this.saveWaiters = [];
    if (!dirty.size) return waiters.forEach((w) => w.resolve());
    this.saving = this.store.commit(this.store.prepare(this.state, dirty));
    try {
      await this.saving;
      for (const w of waiters) w.resolve();
    } catch (e) {
      for (const ref of dirty) this.dirty.add(ref);
      this.opts.log?.(`state: commit failed: ${(e as Error).message}`);
      for (const w of waiters) w.reject(e as Error);
      throw e;
    } finally {
      this.saving = undefined;
    }
  }

  /** Resolves once every change made so far is on disk. */
  committed(): Promise<void> {
    if (this.dirty.size || this.saveTimer) {
      this.scheduleSave();
      return new Promise((resolve, reject) => this.saveWaiters.push({ resolve, reject }));
    }
    return this.saving ?? Promise.resolve();
  }

  // ---- users ----

  users(): UserRec[] {
    return this.state.users;
  }

  user(id: number): UserRec | undefined {
    return this.state.users.find((u) => u.id === id);
  }

  /** A user by numeric ID or by name, as `-u` accepts either. */
  findUser(ref: string | number): UserRec {
    const s = String(ref);
    const u = /^\d+$/.test(s) ? this.user(Number(s)) : this.state.users.find((x) => x.name === s);
    if (!u) throw new TailnetError(`user ${s} not found`);
    return u;
  }

  /**
   * The user an OIDC login vouched for: found by issuer/subject, else made, named after
   * preferred_username (or the email when that name is taken or invalid), as Headscale does;
   * its email and display name follow the provider's claims at every login.
   */
  oidcUser(c: { providerId: string; username?: string; email?: string; displayName?: string }): UserRec {
    let u = this.state.users.find((x) => x.providerId === c.providerId);
    if (!u) {
      const candidates = [c.username, c.email].filter((n): n is string => !!n && USER_NAME.test(n));
      const name = candidates.find((n) => !this.state.users.some((x) => x.name === n)) ?? `oidc-${this.state.nextUserId}`;
      u = { id: this.state.nextUserId++, name, createdAt: this.now().toISOString(), provider: "oidc", providerId: c.providerId };
      this.state.users.push(u);
    }
    if (c.email) u.email = c.email;
    else delete u.email;
    if (c.displayName) u.displayName = c.displayName;
    this.changed([], [], true, [`users:${u.id}`]);
    return u;
  }

  createUser(name: string): UserRec {
    if (!USER_NAME.test(name)) throw new TailnetError(`invalid user name ${JSON.stringify(name)}: use letters, digits, . _ @ -`);
    if (this.state.users.some((u) => u.name === name)) throw new TailnetError(`user ${name} already exists`);
    const u = { id: this.state.nextUserId++, name, createdAt: this.now().toISOString() };
    this.state.users.push(u);
    this.changed([], [], true, [`users:${u.id}`]);
    return u;
  }

  // ---- pre-auth keys ----

  createPreAuthKey(
    userRef: string | number,
    o: { reusable?: boolean; ephemeral?: boolean; expiresInMs?: number; tags?: string[] },
  ): { key: string; rec: PreAuthKeyRec } {
    const user = this.findUser(userRef);
    for (const t of o.tags ?? [])
      if (!/^tag:[A-Za-z][\w-]*$/.test(t)) throw new TailnetError(`invalid tag ${JSON.stringify(t)}: tags look like tag:name`);
    // Plain hex: never `tskey-client-` (the client treats that as OAuth) nor `--TL` (tailnet lock).
    const key = `wg3key-${randomBytes(24).toString("hex")}`;
    const now = this.now();
    const rec: PreAuthKeyRec = {
      id: this.state.nextKeyId++,
      userId: user.id,
      hash: hashKey(key),
      prefix: key.slice(0, 14),
      reusable: Boolean(o.reusable),
      ephemeral: Boolean(o.ephemeral),
      used: false,
      expiration: new Date(now.getTime() + (o.expiresInMs ?? 3_600_000)).toISOString(),
      createdAt: now.toISOString(),
      ...(o.tags?.length ? { tags: [...new Set(o.tags)].sort() } : {}),
    };
    this.state.preAuthKeys.push(rec);
    this.changed([], [], true, [`keys:${rec.id}`]);
    return { key, rec };
  }

  preAuthKeys(): PreAuthKeyRec[] {
    return this.state.preAuthKeys;
  }

  private mustPreAuthKey(prefixOrId: string): PreAuthKeyRec {
    const k = this.state.preAuthKeys.find((p) => String(p.id) === prefixOrId || prefixOrId.startsWith(p.prefix));
    if (!k) throw new TailnetError(`pre-auth key ${prefixOrId} not found`);
    return k;
  }

  expirePreAuthKey(prefixOrId: string): PreAuthKeyRec {
    const k = this.mustPreAuthKey(prefixOrId);
    k.expiration = this.now().toISOString();
    this.changed([], [], true, [`keys:${k.id}`]);
    return k;
  }

  /** Gone for good: it registers nothing more (its nodes stay, as in Headscale). */
  deletePreAuthKey(prefixOrId: string): PreAuthKeyRec {
    const k = this.mustPreAuthKey(prefixOrId);
    this.state.preAuthKeys = this.state.preAuthKeys.filter((p) => p !== k);
    this.changed([], [], true, [`keys:${k.id}`]);
    return k;
  }

  /** The key's record if it may register a node now; otherwise a TailnetError saying why. */
  private validKey(key: string): PreAuthKeyRec {
    const h = Buffer.from(hashKey(key), "hex");
    const rec = this.state.preAuthKeys.find((p) => timingSafeEqual(Buffer.from(p.hash, "hex"), h));
    if (!rec) throw new TailnetError("invalid pre auth key");
    // Headscale's words, which the client shows (`tailscale up`, tailscaled's log).
    if (new Date(rec.expiration) <= this.now()) throw new TailnetError("authkey expired");
    if (rec.used && !rec.reusable) throw new TailnetError("authkey already used");
    return rec;
  }

  // ---- nodes ----

  nodes(): NodeRec[] {
    return this.state.nodes;
  }

  node(id: number): NodeRec | undefined {
    return this.state.nodes.find((n) => n.id === id);
  }

  mustNode(id: number): NodeRec {
    const n = this.node(id);
    if (!n) throw new TailnetError(`node ${id} not found`);
    return n;
  }

  byMachineKey(mkey: string): NodeRec | undefined {
    return this.state.nodes.find((n) => n.machineKey === mkey);
  }

  byNodeKey(nodeKey: string): NodeRec | undefined {
    return this.state.nodes.find((n) => n.nodeKey === nodeKey);
  }

  isExpired(n: NodeRec): boolean {
    return !isZeroTime(n.expiry) && new Date(n.expiry!) <= this.now();
  }

  isOnline(id: number): boolean {
    return this.online.has(id);
  }

  private uniqueName(hostname: string, exceptId?: number): string {
    const base = dnsLabel(hostname);
    const taken = (name: string) => this.state.nodes.some((n) => n.givenName === name && n.id !== exceptId);
    if (!taken(base)) return base;
    for (let i = 1; ; i++) if (!taken(`${base}-${i}`)) return `${base}-${i}`;
  }

  /** Register a node with a pre-auth key, or re-authenticate an existing one (same machine). */
  registerWithKey(a: { machineKey: string; nodeKey: string; authKey: string; hostinfo: Hostinfo; cap: number; expiry?: Date }): NodeRec {
    const key = this.validKey(a.authKey);
    // As Headscale 0.29: a key-registered node takes its tags from the key, never from the client.
    if (a.hostinfo.RequestTags?.length)
      throw new TailnetError(`requested tags [${a.hostinfo.RequestTags.join(" ")}] are invalid or not permitted`);
    const node = this.upsertNode({ ...a, userId: key.userId, ephemeral: key.ephemeral, method: "authkey", keyId: key.id });
    if (key.tags?.length) node.tags = key.tags;
    this.defaultExpiry(node);
    // As Headscale: "used" is what spends a one-off key; a reusable key stays unused in the list.
    if (!key.reusable) key.used = true;
    this.changed([node.id], [], true, [`keys:${key.id}`]);
    return node;
  }

  /** Register after an admin approved an interactive login (`nodes register --user U --key K`). */
  /** An interactive login approved by an admin (`nodes register`) or by an OIDC login ("oidc"). */
  registerByAdmin(
    a: { machineKey: string; nodeKey: string; hostinfo: Hostinfo; cap: number; userId: number; expiry?: Date },
    method: "cli" | "oidc" = "cli",
  ): NodeRec {
    this.refuseTags(a.hostinfo.RequestTags, a.userId);
    const node = this.upsertNode({ ...a, ephemeral: false, method });
    if (a.hostinfo.RequestTags?.length) node.tags = [...new Set(a.hostinfo.RequestTags)].sort();
    this.defaultExpiry(node);
    this.changed([node.id]);
    return node;
  }

  /**
   * As Headscale's node.expiry: a login the client asked no expiry for expires that long after
   * it; a tagged node (a server's identity, not a person's) never expires.
   */
  private defaultExpiry(n: NodeRec): void {
    if (n.tags?.length) n.expiry = undefined;
    else if (!n.expiry && this.opts.nodeExpiry) n.expiry = new Date(this.now().getTime() + this.opts.nodeExpiry).toISOString();
  }

  /** The soonest key expiry after `after`, if any (past or ahead): when peers must next be told a key expired. */
  nextKeyExpiry(after: Date): Date | undefined {
    let next = Number.POSITIVE_INFINITY;
    for (const n of this.state.nodes) {
      const t = isZeroTime(n.expiry) ? 0 : Date.parse(n.expiry!);
      if (t > after.getTime() && t < next) next = t;
    }
    return Number.isFinite(next) ? new Date(next) : undefined;
  }

  /** Nodes whose key expired by itself after `since` (and by now): their views change (Expired), nothing to store. */
  announceExpired(since: Date): number[] {
    const ids = this.state.nodes
      .filter((n) => !isZeroTime(n.expiry) && Date.parse(n.expiry!) > since.getTime() && this.isExpired(n))
      .map((n) => n.id);
    if (ids.length) this.changed(ids, [], false);
    return ids;
  }

  private upsertNode(a: {
    machineKey: string;
    nodeKey: string;
    hostinfo: Hostinfo;
    cap: number;
    userId: number;
    ephemeral: boolean;
    method: NodeRec["registerMethod"];
    keyId?: number;
    /** A key expiry the client asked for (RegisterRequest.Expiry in the future), as Headscale keeps it. */
    expiry?: Date;
  }): NodeRec {
    const hostname = a.hostinfo.Hostname || "node";
    const expiry = a.expiry && a.expiry > this.now() ? a.expiry.toISOString() : undefined;
    const existing = this.byMachineKey(a.machineKey);
    if (existing) {
      // Same machine logging in again (after logout, expiry, or with a new node key): keep its
      // ID, addresses and (unless its hostname changed) name.
      existing.nodeKey = a.nodeKey;
      existing.userId = a.userId;
      this.followHostname(existing, a.hostinfo.Hostname);
      existing.hostinfo = keepNetInfo(a.hostinfo, existing.hostinfo);
      existing.expiry = expiry;
      existing.cap = a.cap;
      existing.registerMethod = a.method;
      existing.preAuthKeyId = a.keyId;
      return existing;
    }
    const other = this.byNodeKey(a.nodeKey);
    if (other) throw new TailnetError("node key already registered to another machine");
    const id = this.state.nextNodeId++;
    const addrs = nthAddresses(this.opts.v4Prefix, this.opts.v6Prefix, this.nextHostNumber());
    const n: NodeRec = {
      id,
      stableId: `n${id.toString(16).padStart(6, "0")}${randomBytes(4).toString("hex")}`,
      userId: a.userId,
      machineKey: a.machineKey,
      nodeKey: a.nodeKey,
      ...addrs,
      givenName: this.uniqueName(hostname),
      hostinfo: a.hostinfo,
      endpoints: [],
      approvedRoutes: [],
      createdAt: this.now().toISOString(),
      ...(expiry ? { expiry } : {}),
      ephemeral: a.ephemeral,
      registerMethod: a.method,
      preAuthKeyId: a.keyId,
      cap: a.cap,
    };
    this.state.nodes.push(n);
    return n;
  }

  /** The lowest host number not in use, so a wiped tailnet hands out .1, .2, ... again. */
  private nextHostNumber(): number {
    const used = new Set(this.state.nodes.map((n) => ipv4ToInt(n.ipv4) - ipv4ToInt(this.opts.v4Prefix.split("/")[0]!)));
    let i = 1;
    while (used.has(i)) i++;
    return i;
  }

  /** Move a node to a new node key (the client rotated it, sending OldNodeKey). */
  rotateNodeKey(n: NodeRec, nodeKey: string): void {
    n.nodeKey = nodeKey;
    this.changed([n.id]);
  }

  /** Logout or `nodes expire`: the key expires now; ephemeral nodes go away instead. */
  expire(id: number): NodeRec {
    const n = this.mustNode(id);
    if (n.ephemeral) {
      this.delete(id);
      return n;
    }
    n.expiry = this.now().toISOString();
    this.changed([id]);
    return n;
  }

  delete(id: number): NodeRec {
    const n = this.mustNode(id);
    this.state.nodes = this.state.nodes.filter((x) => x.id !== id);
    this.online.delete(id);
    this.changed([], [id]);
    return n;
  }

  rename(id: number, name: string): NodeRec {
    const n = this.mustNode(id);
    const label = dnsLabel(name);
    if (label !== name) throw new TailnetError(`invalid name ${JSON.stringify(name)}: use lowercase letters, digits and dashes`);
    if (this.state.nodes.some((x) => x.givenName === name && x.id !== id)) throw new TailnetError(`name ${name} is taken`);
    n.givenName = name;
    this.changed([id]);
    return n;
  }

  /**
   * A new hostname renames the node's MagicDNS label, unless an admin renamed it (as Headscale
   * 0.29: the name follows while it is still the one derived from the old hostname). Returns
   * whether the name changed.
   */
  private followHostname(n: NodeRec, hostname: string | undefined): boolean {
    const old = n.hostinfo.Hostname;
    if (!hostname || !old || hostname === old) return false;
    const derived = dnsLabel(old);
    if (n.givenName !== derived && !new RegExp(`^${derived}-\\d+$`).test(n.givenName)) return false;
    const next = this.uniqueName(hostname, n.id);
    if (next === n.givenName) return false;
    n.givenName = next;
    return true;
  }

  /** What a map request reports: disco key, endpoints (as given: [] clears), host info (non-empty only), capver. */
  updateFromMapRequest(n: NodeRec, r: { discoKey?: string; endpoints?: string[]; hostinfo?: Hostinfo; cap?: number }): void {
    let dirty = false;
    let persist = false;
    if (r.discoKey && r.discoKey !== n.discoKey) {
      n.discoKey = r.discoKey;
      dirty = true;
    }
    if (r.endpoints && JSON.stringify(r.endpoints) !== JSON.stringify(n.endpoints)) {
      n.endpoints = r.endpoints;
      dirty = true;
    }
    const hostinfo = r.hostinfo && Object.keys(r.hostinfo).length ? keepNetInfo(r.hostinfo, n.hostinfo) : undefined;
    if (hostinfo && JSON.stringify(hostinfo) !== JSON.stringify(n.hostinfo)) {
      const routesBefore = JSON.stringify(this.availableRoutes(n));
      const renamed = this.followHostname(n, hostinfo.Hostname);
      n.hostinfo = hostinfo;
      dirty = true;
      persist = persist || renamed || JSON.stringify(this.availableRoutes(n)) !== routesBefore;
    }
    if (r.cap && r.cap !== n.cap) {
      n.cap = r.cap;
      dirty = true;
    }
    // Endpoints and disco keys change on every client start: tell peers, but they are not
    // worth a disk write (the client reports them again after a restart).
    if (dirty) this.changed([n.id], [], persist);
  }

  setOnline(id: number, online: boolean): void {
    const n = this.node(id);
    if (!n || this.online.has(id) === online) return;
    if (online) this.online.add(id);
    else {
      this.online.delete(id);
      n.lastSeen = this.now().toISOString();
    }
    this.changed([id], [], false);
  }

  // ---- routes ----

  /** Everything the node announces (Hostinfo.RoutableIPs), exit routes included: Headscale's "Available". */
  availableRoutes(n: NodeRec): string[] {
    return n.hostinfo.RoutableIPs ?? [];
  }

  /** Routes the node announces (Hostinfo.RoutableIPs), without exit routes. */
  announcedRoutes(n: NodeRec): string[] {
    return this.availableRoutes(n).filter((p) => !EXIT_ROUTES.includes(p));
  }

  /**
   * Exit routes (0.0.0.0/0, ::/0) the node announces (`--advertise-exit-node`) and an admin
   * approved: it is an exit node. No election: every exit node serves them.
   */
  exitRoutes(n: NodeRec): string[] {
    return this.availableRoutes(n).filter((p) => EXIT_ROUTES.includes(p) && n.approvedRoutes.includes(p));
  }

  /** What peers may be given in this node's AllowedIPs (the policy may narrow it per viewer): primaries and exit routes. */
  offeredRoutes(n: NodeRec): string[] {
    return [...this.primaryRoutes(n).sort(), ...this.exitRoutes(n)];
  }

  /** Announced and approved: what the node may serve. */
  servableRoutes(n: NodeRec): string[] {
    return this.announcedRoutes(n).filter((p) => n.approvedRoutes.includes(p));
  }

  /** Prefixes this node currently serves as the primary router. */
  primaryRoutes(n: NodeRec): string[] {
    return [...this.primaries].filter(([, id]) => id === n.id).map(([p]) => p);
  }

  approveRoutes(id: number, routes: string[]): NodeRec {
    const n = this.mustNode(id);
    for (const r of routes)
      if (!isPrefix(r)) throw new TailnetError(`invalid route ${JSON.stringify(r)}: want a prefix like 192.168.99.0/24`);
    n.approvedRoutes = [...new Set(routes)].sort();
    this.changed([id]);
    return n;
  }

  /**
   * One primary per prefix: keep the current primary while it is online and still serves the
   * prefix, otherwise the online node with the lowest ID. Returns the nodes whose primaries changed.
   */
  private electPrimaries(): Set<number> {
    const touched = new Set<number>();
    const candidates = new Map<string, number[]>();
    for (const n of this.state.nodes) {
      if (!this.online.has(n.id) || this.isExpired(n)) continue;
      for (const p of this.servableRoutes(n)) candidates.set(p, [...(candidates.get(p) ?? []), n.id]);
    }
    const next = new Map<string, number>();
    for (const [p, ids] of candidates) {
      const cur = this.primaries.get(p);
      next.set(p, cur !== undefined && ids.includes(cur) ? cur : Math.min(...ids));
    }
    for (const p of new Set([...this.primaries.keys(), ...next.keys()])) {
      const a = this.primaries.get(p);
      const b = next.get(p);
      if (a !== b) {
        if (a !== undefined) touched.add(a);
        if (b !== undefined) touched.add(b);
      }
    }
    this.primaries = next;
    return touched;
  }
}

/**
 * A client reports Hostinfo without NetInfo at times (e.g. on `tailscale up` after `down`,
 * before it has probed the network again), and does not resend a NetInfo it already sent.
 * NetInfo carries PreferredDERP, the node's home DERP region that peers need to reach it, so
 * a report without one keeps the last known.
 */
export function keepNetInfo(next: Hostinfo, prev: Hostinfo): Hostinfo {
  return next.NetInfo == null && prev.NetInfo != null ? { ...next, NetInfo: prev.NetInfo } : next;
}

export function isPrefix(p: string): boolean {
  const m = /^(.+)\/(\d{1,3})$/.exec(p);
  if (!m) return false;
  const bits = Number(m[2]);
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(m[1]!)) return bits <= 32 && m[1]!.split(".").every((o) => Number(o) <= 255);
  return m[1]!.includes(":") && bits <= 128;
}

export { ZERO_TIME };
