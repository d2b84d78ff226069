import type { TailcfgRegion } from "./derp-paths.ts";
import { EXIT_ROUTES } from "./policy.ts";
import type { NodeRec } from "./store.ts";
import { isZeroTime, loginName, type Tailnet } from "./tailnet.ts";

/**
 * tailcfg JSON from the tailnet: the node objects peers see, the full first MapResponse, and
 * the DERP map and DNS config. Field names and shapes follow tailscale's tailcfg package.
 */

export interface DerpRegion {
  regionId: number;
  regionCode: string;
  regionName: string;
  hostName: string;
  ipv4?: string;
  port: number;
  stunPort: number;
  /** Skip TLS verification of the DERP server (host-level tests with a self-signed cert). */
  insecureForTests?: boolean;
}

export interface MapperConfig {
  baseDomain: string;
  /** Tailnet name sent as MapResponse.Domain. */
  domain: string;
  derp: DerpRegion;
  /** More regions (config `derp.paths`), e.g. a STUN-only one, after the embedded one. */
  extraRegions?: TailcfgRegion[];
  nameservers: string[];
}

/** The legacy DERP home string for clients older than capver 111. */
const DERP_MAGIC_IP = "127.3.3.40";

export function derpMap(d: DerpRegion, extra: TailcfgRegion[] = []): Record<string, unknown> {
  return {
    Regions: {
      ...Object.fromEntries(extra.map((r) => [r.RegionID, r])),
      [d.regionId]: {
        RegionID: d.regionId,
        RegionCode: d.regionCode,
        RegionName: d.regionName,
        Nodes: [
          {
            Name: `${d.regionId}a`,
            RegionID: d.regionId,
            HostName: d.hostName,
            ...(d.ipv4 ? { IPv4: d.ipv4, IPv6: "none" } : {}),
            DERPPort: d.port,
            STUNPort: d.stunPort,
            ...(d.insecureForTests ? { InsecureForTests: true } : {}),
          },
        ],
      },
    },
  };
}

export function dnsConfig(c: MapperConfig): Record<string, unknown> {
  return {
    // Proxied = MagicDNS on: the client answers <name>.<base> itself at 100.100.100.100.
    Proxied: true,
    Domains: [c.baseDomain],
    ...(c.nameservers.length ? { Resolvers: c.nameservers.map((Addr) => ({ Addr })) } : {}),
    Routes: {},
  };
}

function preferredDerp(n: NodeRec): number {
  return n.hostinfo.NetInfo?.PreferredDERP ?? 0;
}

/**
 * The tailcfg.Node of `n` as its peers (and itself) see it. `routes` are the routes the viewer
 * is given (a policy may narrow them per viewer); by default all it offers: the prefixes it is
 * primary for and its approved exit routes.
 */
export function nodeView(t: Tailnet, c: MapperConfig, n: NodeRec, routes = t.offeredRoutes(n)): Record<string, unknown> {
  const addresses = [`${n.ipv4}/32`, `${n.ipv6}/128`];
  // PrimaryRoutes is for HA bookkeeping: subnet routes only, never the exit routes.
  const primary = routes.filter((r) => !EXIT_ROUTES.includes(r));
  const online = t.isOnline(n.id);
  const home = preferredDerp(n);
  const expired = t.isExpired(n);
  return {
    ID: n.id,
    StableID: n.stableId,
    Name: `${n.givenName}.${c.baseDomain}.`,
    User: n.userId,
    Key: n.nodeKey,
    ...(isZeroTime(n.expiry) ? {} : { KeyExpiry: n.expiry }),
    Machine: n.machineKey,
    ...(n.discoKey ? { DiscoKey: n.discoKey } : {}),
    Addresses: addresses,
    // Always explicit: before capver 112 a missing AllowedIPs means "route nothing".
    AllowedIPs: [...addresses, ...routes],
    ...(primary.length ? { PrimaryRoutes: primary } : {}),
    Endpoints: n.endpoints,
    ...(home ? { DERP: `${DERP_MAGIC_IP}:${home}`, HomeDERP: home } : {}),
    Hostinfo: n.hostinfo,
    Created: n.createdAt,
    Cap: n.cap,
    Online: online,
    ...(!online && n.lastSeen ? { LastSeen: n.lastSeen } : {}),
    // As Headscale: an expired node is no longer authorised (its key must log in again).
    MachineAuthorized: !expired,
    ...(n.tags?.length ? { Tags: n.tags } : {}),
    ...(expired ? { Expired: true } : {}),
  };
}

export function userProfiles(t: Tailnet, userIds: Iterable<number>): Record<string, unknown>[] {
  return [...new Set(userIds)]
    .sort((a, b) => a - b)
    .flatMap((id) => {
      const u = t.user(id);
      return u ? [{ ID: u.id, LoginName: loginName(u), DisplayName: u.displayName || loginName(u) }] : [];
    });
}

/** A serialised node view; `routes` as in nodeView (undefined: all it offers). */
export type ViewJson = (n: NodeRec, routes?: string[]) => string;

/**
 * The first message of a map stream: everything, with `Node` for self (the client requires
 * it), as JSON text. `view` gives a node's serialised view, so a caller can cache those: the
 * same peer text goes into every node's map (unless a policy narrows a peer's routes for it).
 */
export function fullMapJson(t: Tailnet, c: MapperConfig, self: NodeRec, view: ViewJson): string {
  const { filter, peers: visible, routes } = t.compiled().get(self.id) ?? { filter: [], peers: new Set<number>() };
  const peers = t.nodes().filter((p) => visible.has(p.id));
  const rest = {
    DERPMap: derpMap(c.derp, c.extraRegions),
    DNSConfig: dnsConfig(c),
    Domain: c.domain,
    PacketFilter: filter,
    UserProfiles: userProfiles(t, [self.userId, ...peers.map((p) => p.userId)]),
    ControlTime: new Date().toISOString(),
    CollectServices: false,
    Debug: { DisableLogTail: true },
  };
  const peerViews = peers.map((p) => view(p, routes ? (routes.get(p.id) ?? []) : undefined));
  return `{"Node":${view(self)},"Peers":[${peerViews.join(",")}],${JSON.stringify(rest).slice(1)}`;
}

export function fullMapResponse(t: Tailnet, c: MapperConfig, self: NodeRec): Record<string, unknown> {
  return JSON.parse(fullMapJson(t, c, self, (n, routes) => JSON.stringify(nodeView(t, c, n, routes))));
}
