import type { Engine, ExecResult } from "../engine/engine.ts";

export interface TsPeer {
  HostName: string;
  DNSName: string;
  TailscaleIPs: string[];
  Online: boolean;
  CurAddr?: string;
  Relay?: string;
  PrimaryRoutes?: string[];
  RxBytes?: number;
  TxBytes?: number;
}

/** What `tailscale netcheck --format=json` reports (the fields the NAT lab reads). */
export interface TsNetcheck {
  UDP: boolean;
  /** "true"/"false" as JSON booleans, or absent/null when not known (fewer than two STUN answers). */
  MappingVariesByDestIP?: boolean | null;
  UPnP?: boolean | null;
  PMP?: boolean | null;
  PCP?: boolean | null;
  PreferredDERP?: number;
  GlobalV4?: string;
}

/** One `tailscale ping` pong, as the client reports it. */
export interface TsPong {
  /** direct: a UDP ip:port; relayed: via a DERP region; none: no pong. */
  path: "direct" | "relayed" | "peer-relay" | "none";
  /** "10.44.0.21:41641", "DERP(headscale)", or the error text. */
  via: string;
  ms?: number;
  text: string;
}

export function parsePong(text: string): TsPong {
  const lines = text.trim().split("\n");
  const last = [...lines].reverse().find((l) => /pong from/.test(l));
  if (!last) return { path: "none", via: lines.at(-1)?.trim() ?? "", text };
  const via = /via (\S+)/.exec(last)?.[1] ?? "";
  const ms = /in ([\d.]+)(ms|s|µs)/.exec(last);
  const msVal = ms ? Number(ms[1]) * (ms[2] === "s" ? 1000 : ms[2] === "µs" ? 0.001 : 1) : undefined;
  const path = via.startsWith("DERP(")
    ? "relayed"
    : via.startsWith("peer-relay")
      ? "peer-relay"
      : /^\[?[\d.:a-f]+\]?:\d+$/.test(via)
        ? "direct"
        : "none";
  return { path, via, ms: msVal, text };
}

export interface TsStatus {
  BackendState: string;
  Self: TsPeer;
  Peer?: Record<string, TsPeer>;
}

/** A tailscaled running in a container, driven through its CLI, as a person would (lab.tailscale(node)). */
export class TailscaleInContainer {
  constructor(
    readonly engine: Engine,
    readonly container: string,
  ) {}

  sh(script: string): Promise<ExecResult> {
    return this.engine.sh(this.container, script);
  }

  async up(flags: string[]): Promise<ExecResult> {
    return this.engine.exec(this.container, ["tailscale", "up", ...flags]);
  }

  async down(): Promise<ExecResult> {
    return this.engine.exec(this.container, ["tailscale", "down"]);
  }

  /** The peer with this hostname, as `tailscale status --json` lists it. */
  async peer(hostname: string): Promise<TsPeer | undefined> {
    const s = await this.status();
    return Object.values(s.Peer ?? {}).find((p) => p.HostName === hostname);
  }

  async status(): Promise<TsStatus> {
    return JSON.parse(await this.engine.output(this.container, ["tailscale", "status", "--json"])) as TsStatus;
  }

  async statusText(): Promise<string> {
    return (await this.engine.exec(this.container, ["tailscale", "status"])).stdout;
  }

  /** This node's Tailscale IPv4 address. */
  async ip(): Promise<string> {
    return (await this.engine.output(this.container, ["tailscale", "ip", "-4"])).trim();
  }

  /** `tailscale ping` one pong; says whether the path is direct or via DERP. */
  async tsPing(target: string): Promise<{ ok: boolean; path: "direct" | "relayed" | "none"; text: string }> {
    const r = await this.engine.exec(this.container, ["tailscale", "ping", "-c", "5", "--timeout", "3s", target]);
    const text = r.stdout + r.stderr;
    const path = /via DERP/.test(text) && !/via \d+\.\d+\.\d+\.\d+:\d+/.test(text) ? "relayed" : /via \d/.test(text) ? "direct" : "none";
    return { ok: r.exitCode === 0 || /pong from/.test(text), path, text };
  }

  /**
   * One `tailscale ping` over whatever path the client uses now (no waiting for a direct one):
   * the client's own answer to "direct or relayed?".
   */
  async pong(target: string, timeoutS = 3): Promise<TsPong> {
    const r = await this.engine.exec(this.container, [
      "tailscale",
      "ping",
      "-c",
      "1",
      "--until-direct=false",
      "--timeout",
      `${timeoutS}s`,
      target,
    ]);
    return parsePong(r.stdout + r.stderr);
  }

  /** A fresh `tailscale netcheck` from this client (its own STUN probes, its NAT as seen from outside). */
  async netcheck(): Promise<TsNetcheck> {
    const out = await this.engine.output(this.container, ["tailscale", "netcheck", "--format=json"], { timeoutMs: 30_000 });
    return JSON.parse(out.slice(out.indexOf("{"))) as TsNetcheck;
  }

  async ping(target: string): Promise<boolean> {
    return (await this.engine.exec(this.container, ["ping", "-c1", "-W2", target])).exitCode === 0;
  }

  /** `maxTimeS`: a probe polled for a recovery time wants a short one, or it measures curl's wait. */
  async curl(url: string, maxTimeS = 5): Promise<ExecResult> {
    return this.engine.exec(this.container, ["curl", "-s", "--max-time", String(maxTimeS), url]);
  }

  async tracepath(target: string): Promise<string[]> {
    const r = await this.engine.exec(this.container, ["tracepath", "-n", "-m", "6", target]);
    return [...r.stdout.matchAll(/^\s*\d+:\s+(\d+\.\d+\.\d+\.\d+)/gm)].map((m) => m[1]!);
  }

  /** Routes tailscaled installed in its routing table (52 on Linux). */
  async routes(): Promise<string[]> {
    const r = await this.engine.exec(this.container, ["ip", "route", "show", "table", "52"]);
    return r.stdout
      .split("\n")
      .map((l) => l.split(" ")[0]!)
      .filter(Boolean);
  }
}
