import type { Engine } from "../engine/engine.ts";
import { TailscaleInContainer, type TsNetcheck, type TsPong } from "../nodes/tailscale.ts";
import type { LabPlan } from "./plan.ts";

/** What one client says about itself: its tailnet address, its home relay, its NAT. */
export interface ClientView {
  node: string;
  hostname: string;
  tailscaleIp?: string;
  /** tailscaled's home DERP region (status Self.Relay). */
  homeDerp?: string;
  netcheck?: TsNetcheck;
  error?: string;
}

/** What `from` says about its path to `to`. */
export interface PathView {
  from: string;
  to: string;
  /** The pong's path: the client's own answer. */
  path: TsPong["path"];
  /** "ip:port" for direct, "DERP(region)" for relayed, else the error. */
  via: string;
  ms?: number;
  /** `tailscale status --json` for that peer, after the ping: CurAddr set = direct. */
  curAddr?: string;
  relay?: string;
  rxBytes?: number;
  txBytes?: number;
}

export interface PathsReport {
  at: string;
  clients: ClientView[];
  paths: PathView[];
}

/** The lab's Tailscale clients: nodes of the tailscale image. */
export function tailscaleNodes(plan: LabPlan): string[] {
  return Object.values(plan.nodes)
    .filter((n) => n.image === "tailscale")
    .map((n) => n.key);
}

/**
 * Ask every client, never our own expectations: `tailscale status --json` (addresses, home
 * relay, each peer's CurAddr/Relay/bytes), one `tailscale ping` per ordered pair over the path
 * in use, and a fresh `tailscale netcheck` each (UDP, MappingVariesByDestIP, port mapping).
 * `netcheck: false` skips the netchecks (they take a few seconds).
 */
export async function observePaths(engine: Engine, plan: LabPlan, opts: { netcheck?: boolean } = {}): Promise<PathsReport> {
  const nodes = tailscaleNodes(plan);
  const ts = Object.fromEntries(nodes.map((n) => [n, new TailscaleInContainer(engine, plan.nodes[n]!.container)]));
  const clients: ClientView[] = await Promise.all(
    nodes.map(async (node): Promise<ClientView> => {
      const view: ClientView = { node, hostname: "" };
      try {
        const st = await ts[node]!.status();
        view.hostname = st.Self.HostName;
        view.tailscaleIp = st.Self.TailscaleIPs.find((ip) => ip.includes("."));
        view.homeDerp = st.Self.Relay || undefined;
        if (opts.netcheck !== false) view.netcheck = await ts[node]!.netcheck();
      } catch (e) {
        view.error = (e as Error).message.split("\n")[0];
      }
      return view;
    }),
  );
  const pairs = nodes.flatMap((a) => nodes.filter((b) => b !== a).map((b) => [a, b] as const));
  const paths = await Promise.all(
    pairs.map(async ([from, to]): Promise<PathView> => {
      const target = clients.find((c) => c.node === to);
      if (!target?.tailscaleIp) return { from, to, path: "none", via: target?.error ?? `${to} has no tailnet address` };
      const pong = await ts[from]!.pong(target.tailscaleIp);
      const view: PathView = { from, to, path: pong.path, via: pong.via, ms: pong.ms };
      const peer = await ts[from]!.status()
        .then((s) => Object.values(s.Peer ?? {}).find((p) => p.TailscaleIPs.includes(target.tailscaleIp!)))
        .catch(() => undefined);
      if (peer)
        Object.assign(view, {
          curAddr: peer.CurAddr || undefined,
          relay: peer.Relay || undefined,
          rxBytes: peer.RxBytes,
          txBytes: peer.TxBytes,
        });
      return view;
    }),
  );
  return { at: new Date().toISOString(), clients, paths };
}

const yn = (b: boolean | null | undefined) => (b === true ? "yes" : b === false ? "no" : "unknown");

/** NAT as the client's netcheck saw it, in words. */
export function natSummary(n: TsNetcheck | undefined): string {
  if (!n) return "?";
  if (!n.UDP) return "no UDP";
  const pm = [n.UPnP && "UPnP", n.PMP && "NAT-PMP", n.PCP && "PCP"].filter(Boolean).join("+") || "none";
  return `UDP yes, mapping varies by destination: ${yn(n.MappingVariesByDestIP)}, port mapping: ${pm}, public ${n.GlobalV4 || "?"}`;
}
