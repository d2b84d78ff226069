import { isAddr } from "./validate.ts";

/**
 * ACL policies: a HuJSON file (Tailscale's policy format, as Headscale 0.29 reads it) decoded
 * strictly into our own types, compiled into the tailcfg.FilterRule packet filter each node
 * enforces, and the peers each node may know of. Written from Tailscale's and Headscale's
 * documented behaviour; nothing here is their code.
 *
 * Semantics kept from Headscale 0.29:
 * - users are written with an `@` (`alice@`), groups `group:`, tags `tag:` (defined in tagOwners);
 * - a user (and autogroup:member) means the user's *untagged* nodes; a tagged node is its tags';
 * - autogroup:self only as a destination: each untagged node accepts the listed sources that are
 *   its own user's untagged nodes;
 * - no proto means tailcfg's default set (IPProto omitted: TCP, UDP, ICMP);
 * - a node's filter keeps only the rules it is a destination of; a node sees a peer when either
 *   may reach the other;
 * - the `tests` block is evaluated when a policy is set; one failure refuses it.
 */

export class PolicyError extends Error {}

export interface PortRange {
  First: number;
  Last: number;
}
export interface NetPortRange {
  IP: string;
  Ports: PortRange;
}
export interface FilterRule {
  SrcIPs: string[];
  DstPorts: NetPortRange[];
  IPProto?: number[];
}

/** A node as the policy sees it. */
export interface PolicyNode {
  id: number;
  ips: string[];
  user: string;
  /** The user's email, when a login through an identity provider gave one: policies may name users by it. */
  email?: string;
  tags: string[];
  /** Approved and announced subnet routes (exit routes excluded), as Headscale's SubnetRoutes. */
  subnetRoutes?: string[];
  /** Has approved exit routes (0.0.0.0/0, ::/0): an exit node. */
  exit?: boolean;
  /** The routes its peers may be given in AllowedIPs: the prefixes it is primary for, and its approved exit routes. */
  offered?: string[];
}

type Alias =
  | { kind: "any" }
  | { kind: "user"; name: string }
  | { kind: "group"; name: string }
  | { kind: "tag"; name: string }
  | { kind: "host"; name: string }
  | { kind: "prefix"; prefix: string }
  | { kind: "autogroup"; name: "member" | "tagged" | "self" | "internet" };

interface Dst {
  alias: Alias;
  text: string;
  ports: PortRange[];
}
interface Acl {
  src: Alias[];
  dst: Dst[];
  proto?: number[];
}
interface PolicyTest {
  src: string;
  alias: Alias;
  proto?: number[];
  accept: Dst[];
  deny: Dst[];
}

export interface Policy {
  groups: Map<string, string[]>;
  tagOwners: Map<string, string[]>;
  hosts: Map<string, string>;
  acls: Acl[];
  tests: PolicyTest[];
  /** The file's text, as `policy get` gives it back. */
  text: string;
}

export const ALLOW_ALL: FilterRule[] = [{ SrcIPs: ["*"], DstPorts: [{ IP: "*", Ports: { First: 0, Last: 65535 } }] }];

// ---- HuJSON ----

/** Blanks comments and trailing commas (same length, so positions and lines stay true), for JSON.parse. */
export function standardize(text: string): string {
  const out = text.split("");
  let i = 0;
  let lastSignificant = -1;
  while (i < text.length) {
    const c = text[i]!;
    if (c === '"') {
      const start = i++;
      while (i < text.length && text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
      i++;
      lastSignificant = start;
      continue;
    }
    if (c === "/" && text[i + 1] === "/") {
      while (i < text.length && text[i] !== "\n") out[i++] = " ";
      continue;
    }
    if (c === "/" && text[i + 1] === "*") {
      const end = text.indexOf("*/", i + 2);
      const stop = end < 0 ? text.length : end + 2;
      for (; i < stop; i++) if (text[i] !== "\n") out[i] = " ";
      continue;
    }
    if ((c === "}" || c === "]") && lastSignificant >= 0 && text[lastSignificant] === ",") out[lastSignificant] = " ";
    if (!/\s/.test(c)) lastSignificant = i;
    i++;
  }
  return out.join("");
}

export function lineAt(text: string, pos: number): number {
  return text.slice(0, Math.max(0, pos)).split("\n").length;
}

/** The line where `token` first appears as a JSON string, for messages about a value. */
function lineOf(text: string, token: string): number | undefined {
  const i = text.indexOf(JSON.stringify(token).slice(0, -1));
  return i < 0 ? undefined : lineAt(text, i);
}

export function parseHuJson(text: string): unknown {
  const json = standardize(text);
  try {
    return JSON.parse(json);
  } catch (e) {
    const at = syntaxErrorAt(json);
    const why = (e as Error).message.replace(/ in JSON at position \d+.*$|, "[\s\S]*$/, "");
    throw new PolicyError(`line ${lineAt(text, at)}: HuJSON syntax error: ${why}`);
  }
}

/**
 * Where JSON text stops being valid (Node's message has the position only in some versions):
 * a small recursive-descent scan that returns the offset of the first bad character.
 */
export function syntaxErrorAt(s: string): number {
  let i = 0;
  const ws = () => {
    while (/\s/.test(s[i] ?? "")) i++;
  };
  const bad = (): never => {
    throw i;
  };
  const value = (): void => {
    ws();
    const c = s[i];
    if (c === "{" || c === "[") {
      const close = c === "{" ? "}" : "]";
      i++;
      ws();
      if (s[i] === close) return void i++;
      for (;;) {
        if (c === "{") {
          ws();
          if (s[i] !== '"') bad();
          value();
          ws();
          if (s[i] !== ":") bad();
          i++;
        }
        value();
        ws();
        if (s[i] === ",") i++;
        else if (s[i] === close) return void i++;
        else bad();
      }
    }
    if (c === '"') {
      for (i++; i < s.length && s[i] !== '"'; i++) if (s[i] === "\\") i++;
      if (i >= s.length) bad();
      return void i++;
    }
    const m = /^(-?\d+(\.\d+)?([eE][+-]?\d+)?|true|false|null)/.exec(s.slice(i));
    if (!m) bad();
    i += m![0].length;
  };
  try {
    value();
    ws();
    return Math.min(i, s.length);
  } catch (at) {
    return at as number;
  }
}

// ---- decoding ----

type Raw = Record<string, unknown>;
const KNOWN_TOP = ["groups", "tagOwners", "hosts", "acls", "tests", "ssh", "autoApprovers"];
const PROTOCOLS: Record<string, number> = { icmp: 1, igmp: 2, tcp: 6, udp: 17, gre: 47, esp: 50, ah: 51, "ipv6-icmp": 58, sctp: 132 };

class Decoder {
  constructor(private readonly text: string) {}

  fail(why: string, token?: string): never {
    const line = token === undefined ? undefined : lineOf(this.text, token);
    throw new PolicyError(`${line ? `line ${line}: ` : ""}${why}`);
  }

  object(v: unknown, where: string): Raw {
    if (v === undefined) return {};
    if (!v || typeof v !== "object" || Array.isArray(v)) this.fail(`${where} must be an object`, where);
    return v as Raw;
  }

  strings(v: unknown, where: string): string[] {
    if (!Array.isArray(v) || !v.every((s) => typeof s === "string")) this.fail(`${where} must be a list of strings`, where);
    return v as string[];
  }

  alias(s: string, p: { groups: Map<string, string[]>; tagOwners: Map<string, string[]>; hosts: Map<string, string> }): Alias {
    if (s === "*") return { kind: "any" };
    if (s.startsWith("group:")) {
      if (!p.groups.has(s)) this.fail(`${s} is not defined in groups`, s);
      return { kind: "group", name: s };
    }
    if (s.startsWith("tag:")) {
      if (!p.tagOwners.has(s)) this.fail(`${s} has no entry in tagOwners (a tag must be defined there before it is used)`, s);
      return { kind: "tag", name: s };
    }
    if (s.startsWith("autogroup:")) {
      const name = s.slice("autogroup:".length);
      if (name === "member" || name === "tagged" || name === "self" || name === "internet") return { kind: "autogroup", name };
      this.fail(`${s} is not a known autogroup (known: autogroup:member, autogroup:tagged, autogroup:self, autogroup:internet)`, s);
    }
    if (s.includes("@")) return { kind: "user", name: s };
    if (p.hosts.has(s)) return { kind: "host", name: s };
    if (isAddr(s)) return { kind: "prefix", prefix: s };
    if (isCidr(s)) return { kind: "prefix", prefix: s };
    this.fail(`${JSON.stringify(s)} is not a user (write users as name@), group:, tag:, autogroup:, host, IP or CIDR`, s);
  }

  ports(s: string, where: string): PortRange[] {
    if (s === "*") return [{ First: 0, Last: 65535 }];
    return s.split(",").map((part) => {
      const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(part);
      if (!m) this.fail(`${where}: ${JSON.stringify(part)} is not a port, a range like 8000-8100, or *`, where);
      const first = Number(m[1]);
      const last = Number(m[2] ?? m[1]);
      if (first > 65535 || last > 65535) this.fail(`${where}: port ${Math.max(first, last)} is out of range (0-65535)`, where);
      if (first > last) this.fail(`${where}: port range ${part} ends before it starts`, where);
      return { First: first, Last: last };
    });
  }

  dst(s: string, p: Parameters<Decoder["alias"]>[1]): Dst {
    const i = s.lastIndexOf(":");
    if (i <= 0 || !/^[\d,*-]+$/.test(s.slice(i + 1)))
      this.fail(`destination ${JSON.stringify(s)} needs :ports (e.g. tag:server:80 or *:*)`, s);
    return { alias: this.alias(s.slice(0, i), p), text: s, ports: this.ports(s.slice(i + 1), s) };
  }

  proto(v: unknown, where: string): number[] | undefined {
    if (v === undefined || v === "") return undefined;
    if (typeof v !== "string") this.fail(`${where}.proto must be a string`, where);
    if (PROTOCOLS[v] !== undefined) return [PROTOCOLS[v]!];
    if (/^(0|[1-9]\d{0,2})$/.test(v) && Number(v) <= 255) return [Number(v)];
    this.fail(`${where}: proto ${JSON.stringify(v)} is not a protocol name (${Object.keys(PROTOCOLS).join(", ")}) or number 0-255`, v);
  }
}

/** Why a test destination is no single host and port (Headscale's validateTestDestination), or undefined. */
function testDstProblem(dst: Dst, hosts: Map<string, string>): string | undefined {
  if (isAutogroup(dst.alias, "internet")) return "autogroup:internet not valid as a test destination";
  if (dst.ports.length !== 1 || dst.ports[0]!.First !== dst.ports[0]!.Last) return "test destination port must be a single port";
  // Written with a /N: refused even as /32 (Headscale reads the text); a host's value only when wider than one address.
  const cidr = "test destination must be a single host, not a CIDR range";
  if (dst.alias.kind === "prefix" && dst.alias.prefix.includes("/")) return cidr;
  const host = dst.alias.kind === "host" ? hosts.get(dst.alias.name) : undefined;
  if (host?.includes("/") && !/\/(32|128)$/.test(host)) return cidr;
  return undefined;
}

export function isCidr(s: string): boolean {
  const m = /^(.+)\/(\d{1,3})$/.exec(s);
  if (!m || !isAddr(m[1]!)) return false;
  return Number(m[2]) <= (m[1]!.includes(":") ? 128 : 32);
}

/** Decode and validate a policy file. Throws a PolicyError with one sentence (and the line, where known). */
export function parsePolicy(text: string): Policy {
  const d: Decoder = new Decoder(text);
  const raw = parseHuJson(text);
  const top = d.object(raw, "the policy");
  for (const k of Object.keys(top)) {
    if (!KNOWN_TOP.includes(k)) d.fail(`unknown field ${JSON.stringify(k)} (known: ${KNOWN_TOP.join(", ")})`, k);
    if ((k === "ssh" || k === "autoApprovers") && Object.keys(d.object(Array.isArray(top[k]) ? {} : top[k], k)).length)
      d.fail(`${k} is not supported by the builtin server yet`, k);
  }
  const groups = new Map<string, string[]>();
  for (const [g, members] of Object.entries(d.object(top.groups, "groups"))) {
    if (!/^group:[A-Za-z0-9][\w.-]*$/.test(g)) d.fail(`group name ${JSON.stringify(g)} must look like group:name`, g);
    const list = d.strings(members, g);
    for (const m of list)
      if (!m.includes("@")) d.fail(`${g}: member ${JSON.stringify(m)} must be a user written name@ (groups hold users only)`, m);
    groups.set(g, list);
  }
  const tagOwners = new Map<string, string[]>();
  const ownersRaw = d.object(top.tagOwners, "tagOwners");
  for (const t of Object.keys(ownersRaw)) {
    if (!/^tag:[A-Za-z][\w-]*$/.test(t)) d.fail(`tag name ${JSON.stringify(t)} must look like tag:name, starting with a letter`, t);
    tagOwners.set(t, []);
  }
  const hosts = new Map<string, string>();
  for (const [h, ip] of Object.entries(d.object(top.hosts, "hosts"))) {
    if (typeof ip !== "string" || !(isAddr(ip) || isCidr(ip))) d.fail(`hosts.${h} must be an IP or CIDR`, h);
    hosts.set(h, ip);
  }
  const ctx = { groups, tagOwners, hosts };
  for (const [t, owners] of Object.entries(ownersRaw)) {
    const list = d.strings(owners, t);
    for (const o of list) {
      const a = d.alias(o, ctx);
      if (!["user", "group", "tag"].includes(a.kind)) d.fail(`${t}: owner ${JSON.stringify(o)} must be a user, group or tag`, o);
    }
    tagOwners.set(t, list);
  }
  const acls = (top.acls === undefined ? [] : Array.isArray(top.acls) ? top.acls : d.fail("acls must be a list", "acls")).map(
    (a, i): Acl => {
      const r = d.object(a, `acls[${i}]`);
      for (const k of Object.keys(r))
        if (!["action", "src", "dst", "proto"].includes(k)) d.fail(`acls[${i}]: unknown field ${JSON.stringify(k)}`, k);
      if (r.action !== "accept") d.fail(`acls[${i}]: action must be "accept", got ${JSON.stringify(r.action)}`, String(r.action));
      const src = d.strings(r.src, `acls[${i}].src`).map((s) => {
        const al = d.alias(s, ctx);
        if (isAutogroup(al, "self")) d.fail(`acls[${i}]: autogroup:self is valid only as a destination`, s);
        if (isAutogroup(al, "internet")) d.fail(`acls[${i}]: autogroup:internet is valid only as a destination`, s);
        return al;
      });
      const dst = d.strings(r.dst, `acls[${i}].dst`).map((s) => d.dst(s, ctx));
      return { src, dst, proto: d.proto(r.proto, `acls[${i}]`) };
    },
  );
  const tests = (top.tests === undefined ? [] : Array.isArray(top.tests) ? top.tests : d.fail("tests must be a list", "tests")).map(
    (t, i): PolicyTest => {
      const r = d.object(t, `tests[${i}]`);
      for (const k of Object.keys(r))
        if (!["src", "proto", "accept", "deny"].includes(k)) d.fail(`tests[${i}]: unknown field ${JSON.stringify(k)}`, k);
      if (typeof r.src !== "string") d.fail(`tests[${i}].src must be a string`, `tests`);
      // As Headscale: a test is one connection to one host on one port (never the internet, a range or a CIDR).
      const testDst = (s: string) => {
        const dst = d.dst(s, ctx);
        const why = testDstProblem(dst, hosts);
        if (why) d.fail(`tests[${i}]: ${JSON.stringify(s)}: ${why}`, s);
        return dst;
      };
      const accept = r.accept === undefined ? [] : d.strings(r.accept, `tests[${i}].accept`).map(testDst);
      const deny = r.deny === undefined ? [] : d.strings(r.deny, `tests[${i}].deny`).map(testDst);
      if (!accept.length && !deny.length) d.fail(`tests[${i}] must have at least one of "accept" or "deny"`, r.src);
      const alias = d.alias(r.src, ctx);
      if (isAutogroup(alias, "internet")) d.fail(`tests[${i}]: autogroup:internet is not valid as a test source`, r.src);
      return { src: r.src, alias, proto: d.proto(r.proto, `tests[${i}]`), accept, deny };
    },
  );
  return { groups, tagOwners, hosts, acls, tests, text };
}

// ---- resolution and compilation ----

const isAutogroup = (a: Alias, name: string): boolean => a.kind === "autogroup" && a.name === name;

const userMatches = (alias: string, user: string): boolean => {
  const bare = alias.endsWith("@") ? alias.slice(0, -1) : alias;
  return user === bare || user === alias;
};

/** A node's user as an alias names it: by user name, or (as Headscale) by the email an OIDC login stored. */
const ownedBy = (alias: string, n: PolicyNode): boolean => userMatches(alias, n.user) || (!!n.email && userMatches(alias, n.email));

/** The IPs (or CIDRs) an alias stands for, "*" for any. */
function resolve(p: Policy, a: Alias, nodes: PolicyNode[]): string[] {
  const ipsOf = (f: (n: PolicyNode) => boolean) => nodes.filter(f).flatMap((n) => n.ips);
  const untagged = (n: PolicyNode) => n.tags.length === 0;
  switch (a.kind) {
    case "any":
      return ["*"];
    case "user":
      return ipsOf((n) => untagged(n) && ownedBy(a.name, n));
    case "group": {
      const members = p.groups.get(a.name) ?? [];
      return ipsOf((n) => untagged(n) && members.some((m) => ownedBy(m, n)));
    }
    case "tag":
      return ipsOf((n) => n.tags.includes(a.name));
    case "host":
      return [p.hosts.get(a.name)!];
    case "prefix":
      return [a.prefix];
    case "autogroup":
      if (a.name === "member") return ipsOf(untagged);
      if (a.name === "tagged") return ipsOf((n) => !untagged(n));
      if (a.name === "internet") return THE_INTERNET;
      return []; // self: per node
  }
}

/** May a user own a tag under this policy (tagOwners, through groups and owning tags)? */
export function canOwnTag(p: Policy, tag: string, user: string, seen = new Set<string>()): boolean {
  const owners = p.tagOwners.get(tag);
  if (!owners || seen.has(tag)) return false;
  seen.add(tag);
  return owners.some((o) =>
    o.startsWith("group:")
      ? (p.groups.get(o) ?? []).some((m) => userMatches(m, user))
      : o.startsWith("tag:")
        ? canOwnTag(p, o, user, seen)
        : userMatches(o, user),
  );
}

const uniq = (xs: string[]) => [...new Set(xs)];

/** The rules every node shares (autogroup:self destinations excluded). */
export function globalRules(p: Policy, nodes: PolicyNode[]): FilterRule[] {
  const rules: FilterRule[] = [];
  for (const acl of p.acls) {
    const src = uniq(acl.src.flatMap((a) => resolve(p, a, nodes)));
    const SrcIPs = src.includes("*") ? ["*"] : src;
    const DstPorts = acl.dst
      .filter((d) => !(d.alias.kind === "autogroup" && d.alias.name === "self"))
      .flatMap((d) => uniq(resolve(p, d.alias, nodes)).flatMap((IP) => d.ports.map((Ports) => ({ IP, Ports }))));
    if (SrcIPs.length && DstPorts.length) rules.push({ SrcIPs, DstPorts, ...(acl.proto ? { IPProto: acl.proto } : {}) });
  }
  return rules;
}

/** autogroup:self rules for one untagged node: its own user's untagged nodes among the sources. */
function selfRules(p: Policy, node: PolicyNode, nodes: PolicyNode[]): FilterRule[] {
  if (node.tags.length) return [];
  const same = nodes.filter((n) => !n.tags.length && n.user === node.user);
  const rules: FilterRule[] = [];
  for (const acl of p.acls) {
    const self = acl.dst.filter((d) => d.alias.kind === "autogroup" && d.alias.name === "self");
    if (!self.length) continue;
    const src = acl.src.flatMap((a) => resolve(p, a, nodes));
    const SrcIPs = uniq(same.filter((n) => n.ips.some((ip) => ipIn(ip, src))).flatMap((n) => n.ips));
    const DstPorts = self.flatMap((d) => node.ips.flatMap((IP) => d.ports.map((Ports) => ({ IP, Ports }))));
    if (SrcIPs.length) rules.push({ SrcIPs, DstPorts, ...(acl.proto ? { IPProto: acl.proto } : {}) });
  }
  return rules;
}

/**
 * Is this destination one the node enforces? Its own addresses; a prefix overlapping a subnet
 * route it is approved for (it forwards there); on an exit node, any part of the internet
 * (tailscaled filters what it forwards too). As Headscale's ReduceFilterRules.
 */
function enforces(node: PolicyNode, dstIP: string): boolean {
  if (dstIP === "*" || node.ips.some((ip) => ipIn(ip, [dstIP]))) return true;
  if (node.subnetRoutes?.some((r) => overlaps(r, dstIP))) return true;
  return Boolean(node.exit) && insideAny(dstIP, THE_INTERNET);
}

/** The packet filter one node enforces: the rules it is a destination of, reduced to what it enforces. */
export function nodeFilter(p: Policy, node: PolicyNode, nodes: PolicyNode[], global = globalRules(p, nodes)): FilterRule[] {
  const out: FilterRule[] = [];
  for (const r of global) {
    const DstPorts = r.DstPorts.filter((d) => enforces(node, d.IP));
    if (DstPorts.length) out.push({ ...r, DstPorts });
  }
  return [...out, ...selfRules(p, node, nodes)];
}

/** Does this filter let `src` reach `dst` on `port` (TCP unless proto is given)? */
export function filterAllows(rules: FilterRule[], src: string, dst: string, port: number, proto = 6): boolean {
  return rules.some(
    (r) =>
      (r.IPProto ? r.IPProto.includes(proto) : [1, 6, 17, 58].includes(proto)) &&
      ipIn(src, r.SrcIPs) &&
      r.DstPorts.some((d) => ipIn(dst, [d.IP]) && d.Ports.First <= port && port <= d.Ports.Last),
  );
}

/** Is `a` a source of the rule: one of its addresses, or (a subnet router) one of its routes? */
function isSource(r: FilterRule, a: PolicyNode): boolean {
  return a.ips.some((ip) => ipIn(ip, r.SrcIPs)) || Boolean(a.subnetRoutes?.some((route) => r.SrcIPs.some((s) => overlaps(s, route))));
}

/** Do the rule's destinations cover the whole internet ("*", autogroup:internet, 0.0.0.0/0 and ::/0)? */
export function coversInternet(r: FilterRule): boolean {
  return THE_INTERNET.every((block) => r.DstPorts.some((d) => d.IP === "*" || insideAny(block, [d.IP])));
}

/**
 * Whether `a` may open a connection to `b` (on any port) under b's filter: to b's addresses or
 * b's subnet routes, or through b as an exit node when a may reach the whole internet.
 * As Headscale's CanAccess.
 */
function canAccess(filterOfB: FilterRule[], a: PolicyNode, b: PolicyNode): boolean {
  return filterOfB.some(
    (r) =>
      isSource(r, a) &&
      (r.DstPorts.some((d) => d.IP === "*" || b.ips.some((ip) => ipIn(ip, [d.IP])) || b.subnetRoutes?.some((s) => overlaps(s, d.IP))) ||
        (Boolean(b.exit) && coversInternet(r))),
  );
}

/**
 * The routes of `peer` that `viewer` gets in AllowedIPs: a subnet route when some rule lets the
 * viewer (or its own subnets) reach into it or lets it reach the viewer (Headscale's
 * CanAccessRoute); an exit route only when the viewer may reach the whole internet
 * (autogroup:internet). A co-router of the same prefix always sees who is primary.
 */
export function routesFor(rules: FilterRule[], viewer: PolicyNode, peer: PolicyNode): string[] {
  const mine = viewer.subnetRoutes ?? [];
  const srcHasViewer = (r: FilterRule) => viewer.ips.some((ip) => ipIn(ip, r.SrcIPs));
  const dstHasViewer = (r: FilterRule) => r.DstPorts.some((d) => viewer.ips.some((ip) => ipIn(ip, [d.IP])));
  const srcOverlaps = (r: FilterRule, ps: string[]) => r.SrcIPs.some((s) => ps.some((p) => overlaps(s, p)));
  const dstOverlaps = (r: FilterRule, ps: string[]) => r.DstPorts.some((d) => ps.some((p) => overlaps(d.IP, p)));
  return (peer.offered ?? []).filter((route) => {
    if (EXIT_ROUTES.includes(route)) return rules.some((r) => srcHasViewer(r) && coversInternet(r));
    if (mine.includes(route)) return true;
    return rules.some(
      (r) =>
        (srcHasViewer(r) && dstOverlaps(r, [route])) ||
        (srcOverlaps(r, [route]) && dstHasViewer(r)) ||
        (mine.length > 0 && srcOverlaps(r, mine) && dstOverlaps(r, [route])) ||
        (mine.length > 0 && srcOverlaps(r, [route]) && dstOverlaps(r, mine)),
    );
  });
}

/** The peers a node may see: a Set under a policy, a view of all other nodes without one. */
export interface PeerSet extends Iterable<number> {
  has(id: number): boolean;
  readonly size: number;
}

/** Every node but `self`, without a set per node: allow-all would otherwise cost N² per change. */
function allBut(self: number, all: ReadonlySet<number>): PeerSet {
  return {
    has: (id) => id !== self && all.has(id),
    get size() {
      return all.size - (all.has(self) ? 1 : 0);
    },
    *[Symbol.iterator]() {
      for (const id of all) if (id !== self) yield id;
    },
  };
}

/**
 * What one node's map carries: its packet filter, the peers it may know of, and (under a policy)
 * the routes of each such peer it is given; without `routes` every peer's offered routes.
 */
export interface Compiled {
  filter: FilterRule[];
  peers: PeerSet;
  routes?: Map<number, string[]>;
}

/** For each node, the filter, the IDs of the peers it may know of (either may reach the other) and their routes. */
export function compileAll(p: Policy | undefined, nodes: PolicyNode[]): Map<number, Compiled> {
  const out = new Map<number, Compiled>();
  if (!p) {
    const all = new Set(nodes.map((n) => n.id));
    for (const n of nodes) out.set(n.id, { filter: ALLOW_ALL, peers: allBut(n.id, all) });
    return out;
  }
  const global = globalRules(p, nodes);
  const filters = new Map(nodes.map((n) => [n.id, nodeFilter(p, n, nodes, global)]));
  for (const n of nodes) {
    const peers = new Set<number>();
    const routes = new Map<number, string[]>();
    for (const m of nodes) {
      if (m.id === n.id || !(canAccess(filters.get(m.id)!, n, m) || canAccess(filters.get(n.id)!, m, n))) continue;
      peers.add(m.id);
      if (m.offered?.length) routes.set(m.id, routesFor(global, n, m));
    }
    out.set(n.id, { filter: filters.get(n.id)!, peers, routes });
  }
  return out;
}

/**
 * Run the policy's `tests` block against the nodes: every accept must be allowed and every deny
 * denied, for each address of the source and destination (same family). Throws one sentence
 * naming every failed assertion, as Headscale's "test(s) failed".
 */
export function runTests(p: Policy, nodes: PolicyNode[]): void {
  const global = globalRules(p, nodes);
  const filterFor = (ip: string) => {
    const owner = nodes.find((n) => n.ips.includes(ip));
    return owner ? nodeFilter(p, owner, nodes, global) : global;
  };
  // A CIDR stands for its first address here; "*" is not an address to test from or to.
  const addresses = (a: Alias) => resolve(p, a, nodes).flatMap((ip) => (ip === "*" ? [] : [ip.split("/")[0]!]));
  const failures: string[] = [];
  for (const t of p.tests) {
    const srcs = addresses(t.alias);
    if (!srcs.length) {
      failures.push(`${t.src}: the source resolved to no addresses`);
      continue;
    }
    /** Every (source, destination) address pair of one family, and whether the filter lets it through. */
    const verdicts = (d: Dst) =>
      addresses(d.alias).flatMap((dst) =>
        srcs
          .filter((src) => src.includes(":") === dst.includes(":"))
          .map((src) => filterAllows(filterFor(dst), src, dst, d.ports[0]!.First, t.proto?.[0])),
      );
    for (const d of t.accept) {
      const v = verdicts(d);
      if (!v.length) failures.push(`${t.src} -> ${d.text}: the destination resolved to no addresses`);
      else if (!v.every(Boolean)) failures.push(`${t.src} -> ${d.text}: expected ALLOWED, got DENIED`);
    }
    for (const d of t.deny) if (verdicts(d).some(Boolean)) failures.push(`${t.src} -> ${d.text}: expected DENIED, got ALLOWED`);
  }
  if (failures.length) throw new PolicyError(`the policy's tests failed: ${failures.join("; ")}`);
}

const bare = (ip: string) => ip.replace(/\/(32|128)$/, "");

// ---- addresses ----

export const EXIT_ROUTES = ["0.0.0.0/0", "::/0"];

interface Block {
  v6: boolean;
  n: bigint;
  len: number;
}

function block(prefix: string): Block {
  const [net, bits] = prefix.split("/");
  const a = toBig(net!);
  const width = a.v6 ? 128 : 32;
  const len = bits === undefined ? width : Number(bits);
  return { v6: a.v6, n: (a.n >> BigInt(width - len)) << BigInt(width - len), len };
}

function blockText(b: Block): string {
  if (!b.v6) return `${[24, 16, 8, 0].map((s) => Number((b.n >> BigInt(s)) & 255n)).join(".")}/${b.len}`;
  const groups = [112, 96, 80, 64, 48, 32, 16, 0].map((s) => Number((b.n >> BigInt(s)) & 0xffffn).toString(16));
  return `${groups.join(":").replace(/(^|:)0(:0)+(:|$)/, "::")}/${b.len}`;
}

/** Is `inner` (a prefix or address) inside `outer`? */
function inside(inner: Block, outer: Block): boolean {
  if (inner.v6 !== outer.v6 || inner.len < outer.len) return false;
  const shift = BigInt((inner.v6 ? 128 : 32) - outer.len);
  return inner.n >> shift === outer.n >> shift;
}

/** Do two prefixes ("*" is everything) share any address? */
export function overlaps(a: string, b: string): boolean {
  if (a === "*" || b === "*") return true;
  const x = block(a);
  const y = block(b);
  return inside(x, y) || inside(y, x);
}

/** Is the prefix wholly inside one of `set` ("*" is everything)? */
export function insideAny(prefix: string, set: string[]): boolean {
  if (set.includes("*")) return true;
  if (prefix === "*") return false;
  const p = block(prefix);
  return set.some((s) => inside(p, block(s)));
}

/** `whole` minus `holes`, as aligned prefixes: a block without holes whole, one with holes split in two. */
function subtract(whole: Block, holes: Block[]): Block[] {
  const hit = holes.filter((h) => inside(h, whole) || inside(whole, h));
  if (!hit.length) return [whole];
  if (hit.some((h) => inside(whole, h))) return [];
  const width = whole.v6 ? 128 : 32;
  const half = BigInt(width - whole.len - 1);
  const lo = { ...whole, len: whole.len + 1 };
  const hi = { ...lo, n: whole.n | (1n << half) };
  return [...subtract(lo, hit), ...subtract(hi, hit)];
}

/**
 * autogroup:internet: every IPv4 address and 2000::/3, without the private (RFC 1918), CGNAT
 * and Tailscale, and link-local ranges (the set Headscale calls TheInternet). As disjoint
 * aligned prefixes, so a prefix inside the internet lies inside one of them.
 */
export const THE_INTERNET: string[] = [
  ...subtract(block("0.0.0.0/0"), ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16"].map(block)),
  ...subtract(block("2000::/3"), ["fc00::/7", "fd7a:115c:a1e0::/48", "fe80::/10"].map(block)),
].map(blockText);

function toBig(ip: string): { v6: boolean; n: bigint } {
  if (!ip.includes(":")) return { v6: false, n: ip.split(".").reduce((a, o) => (a << 8n) + BigInt(Number(o)), 0n) };
  const [head, tail] = ip.split("::") as [string, string | undefined];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
  return { v6: true, n: groups.reduce((a, g) => (a << 16n) + BigInt(Number.parseInt(g || "0", 16)), 0n) };
}

/** Is `ip` (an address) inside any of `set` ("*", addresses, CIDRs)? */
export function ipIn(ip: string, set: string[]): boolean {
  const a = toBig(bare(ip));
  return set.some((s) => {
    if (s === "*") return true;
    const [net, bits] = s.split("/");
    const b = toBig(net!);
    if (a.v6 !== b.v6) return false;
    const width = a.v6 ? 128 : 32;
    const len = bits === undefined ? width : Number(bits);
    const shift = BigInt(width - len);
    return a.n >> shift === b.n >> shift;
  });
}
