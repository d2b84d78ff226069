import http from "node:http";
import type { AddressInfo } from "node:net";
import type { Tailnet } from "./tailnet.ts";

/** What the metrics need of the server (an interface, so metrics.ts does not import server.ts). */
export interface ControlServer {
  readonly tailnet: Tailnet;
  readonly stats: {
    mapBytes: number;
    openStreams: number;
    noiseConnections: number;
    registers: Map<string, number>;
    refused: Map<string, number>;
  };
  readonly mapStreams: number;
  readonly pendingLogins: number;
  readonly derp?: { clientCount(): number };
}

/**
 * Prometheus text exposition of the control server's state on its own listen address
 * (metrics_listen_addr, as Headscale has), never on the control port: nodes, streams,
 * connections, map bytes sent, register outcomes and refused requests.
 */

type Sample = [name: string, type: "gauge" | "counter", help: string, values: [labels: string, value: number][]];

function samples(ctl: ControlServer): Sample[] {
  const t = ctl.tailnet;
  const nodes = t.nodes();
  const labelled = (label: string, m: Map<string, number>): [string, number][] =>
    [...m].sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => [`{${label}="${k}"}`, v]);
  return [
    ["wg3_control_nodes", "gauge", "Registered nodes.", [["", nodes.length]]],
    ["wg3_control_nodes_online", "gauge", "Nodes with a live map stream.", [["", nodes.filter((n) => t.isOnline(n.id)).length]]],
    ["wg3_control_map_streams", "gauge", "Open map long-polls.", [["", ctl.mapStreams]]],
    ["wg3_control_noise_connections", "gauge", "Open Noise (ts2021) connections.", [["", ctl.stats.noiseConnections]]],
    ["wg3_control_http2_streams", "gauge", "Open HTTP/2 streams inside Noise.", [["", ctl.stats.openStreams]]],
    ["wg3_control_pending_logins", "gauge", "Interactive logins waiting for an admin.", [["", ctl.pendingLogins]]],
    ["wg3_control_derp_clients", "gauge", "Clients of the embedded DERP relay.", [["", ctl.derp?.clientCount() ?? 0]]],
    ["wg3_control_map_bytes_total", "counter", "Bytes of map responses written (framed).", [["", ctl.stats.mapBytes]]],
    ["wg3_control_register_total", "counter", "Register requests by outcome.", labelled("outcome", ctl.stats.registers)],
    ["wg3_control_refused_total", "counter", "Requests refused as malformed, by kind.", labelled("request", ctl.stats.refused)],
    ["process_resident_memory_bytes", "gauge", "Resident memory of the server process.", [["", process.memoryUsage().rss]]],
  ];
}

export function renderMetrics(ctl: ControlServer): string {
  return samples(ctl)
    .map(([name, type, help, values]) =>
      [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...values.map(([l, v]) => `${name}${l} ${v}`)].join("\n"),
    )
    .join("\n")
    .concat("\n");
}

export async function startMetrics(ctl: ControlServer, at: { host: string; port: number }): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.method !== "GET" || new URL(req.url ?? "/", "http://x").pathname !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain" });
      return void res.end("only /metrics here\n");
    }
    res.writeHead(200, { "content-type": "text/plain; version=0.0.4" });
    res.end(renderMetrics(ctl));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(at.port, at.host, () => resolve());
  });
  return server;
}

export const boundPort = (s: http.Server): number => (s.address() as AddressInfo).port;
