import { HEADSCALE_TUNED } from "./servers.ts";
import { ceilingSentence, type Row, whereHeadscaleWins } from "./summary.ts";

/** The method, as the generated README states it, with the parts that depend on the results. */
export function methodNotes(o: {
  split: { server: string; loadgen: string } | undefined;
  runs: number;
  workers: number;
  realistic: boolean;
  churn: number;
  rows: Row[];
  limits: string;
}): string[] {
  const tuned = Object.entries(HEADSCALE_TUNED(1))
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");
  return [
    `Setup: each run starts a fresh server on 127.0.0.1 (Headscale: the cached pinned binary, plain HTTP, SQLite in a temporary directory, recipe-3's headscale.yaml moved to loopback; builtin: src/control under tsx; null: bench/control/null-server.ts). ${
      o.split
        ? `The server is pinned to CPU ${o.split.server}, the load generator (all its processes, and the real tailscaled clients) to CPU ${o.split.loadgen} (taskset), so neither measures the other's work.`
        : "Server and load generator share the machine's cores (one CPU, or no taskset)."
    }`,
    `Load generator: ${o.workers} worker processes, each driving a round-robin share of the simulated nodes (its own Noise connections, registrations and map streams); the parent only starts the phases. Each worker stamps the moment all of its nodes satisfy the phase's condition; a phase ends at the latest stamp. Its busy share is the CPU time of all its processes over the CPU time its cores offered until full mesh, and of the busiest process over the wall time; above 90% the row is flagged SATURATED.`,
    `Clients: ${
      o.realistic
        ? "simulated nodes behave like tailscaled 1.98 as recorded: its Hostinfo (services, NetInfo), a stream request, then a lite update with four endpoints; when a server ends a stream they poll again, with backoff from 100 ms to 2 s while it is away."
        : "simulated nodes send a minimal Hostinfo and no endpoints (--clients minimal)."
    }`,
    `Headscale runs twice: 'headscale' with its defaults (change batching 800 ms), and 'headscale-tuned' with ${tuned} (one map worker per CPU it may use), what its maintainers would try first for a burst of changes. The builtin server has no such knobs: it sends each event-loop turn's changes at once.`,
    `Runs: ${o.runs} per server and size; the table shows medians over the runs that completed and the spread (min-max) of the time to full mesh. Each run has a wall-time limit (${o.limits}); a run past it is reported as 'did not complete within X s' with how far it got, and the larger sizes are then skipped for that server.`,
    `Measured, in this order in each run: all registered (first registration until the last node holds a map stream); all have N-1 peers (until every node's netmap lists all others); server CPU (user + system from /proc/PID/stat over that interval) and peak RSS (VmHWM); map data per node (bytes received until full mesh, as sent on the wire: Headscale compresses with zstd, the builtin and null servers send stored frames); stream resets (map streams the server ended, before the restart); one more joins (a node registers into the steady tailnet, until it and every other node see each other); one leaves (a node is closed, then deleted through the server's admin API, until no other node lists it); ${o.churn} change endpoints (${o.churn} nodes send a lite update with new endpoints, until every other node has them, and the map bytes that cost per node); real tailscaled (k real 1.98 clients, userspace networking, run tailscale up together, each timed until its status lists every node; not against the null server); server restart (stopped and started on the same state, until every node has a full netmap again).`,
    "The null server speaks the same transport (Noise, HTTP/2, zstd-framed map stream) and does the least a server can: it authorises every registration, keeps each node's peer entry as JSON built once per change, joins those strings for a new stream's netmap, and sends each event-loop turn's changes as one frame encoded once for all streams. No database, policy or per-peer computation: its times are the load generator's ceiling.",
    ceilingSentence(o.rows),
    "Not like for like: Headscale also keeps SQLite and deliberate batching delays, and closes map streams it considers slow (simulated nodes then poll again, as tailscaled does); the builtin server keeps per-record JSON files. Neither is given an ACL policy, so both compute allow-all peer sets.",
    "Stream resets and an overloaded load generator: both real servers end a map stream whose client takes no data for a while (builtin: 30 s, `limits.write_timeout`), as they must against a vanished client; the simulated node then polls again and gets a whole new netmap. The null server never ends a stream. Once the load generator is saturated (1000 nodes on its one core) some of its streams go unread that long, and each reset adds a full netmap to its backlog. A run that did not complete with thousands of stream resets therefore measures that spiral, not the server's steady capacity; its note gives the count.",
    whereHeadscaleWins(o.rows),
  ];
}
