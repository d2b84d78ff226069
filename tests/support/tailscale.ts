import type { Engine, ExecResult } from "../../src/engine/engine.ts";

export interface TsPeer {
  HostName: string;
  DNSName: string;
  TailscaleIPs: string[];
  Online: boolean;
  CurAddr?: string;
  Relay?: string;
  PrimaryRoutes?: string[];
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
