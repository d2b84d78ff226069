import { randomBytes } from "node:crypto";
import type { Engine } from "../engine/engine.ts";
import type { Recipe } from "../recipe/types.ts";
import type { LabPlan } from "./plan.ts";

/**
 * The scorecard: what each recipe costs and gives, measured in its running lab. The lab knows
 * its nodes; this table knows only which node plays which part in the comparison.
 */

/** A node that captures while the marker passes, and what it is in the comparison. */
interface Watcher {
  node: string;
  /** What the table calls it ("lighthouse", "coordinator + DERP relay"). */
  as: string;
  iface: string;
  filter?: string;
}

export interface ScoreSpec {
  recipe: string;
  /** The node the probes start on (the roaming one). */
  from: string;
  /** Where they go: a node's address on a network (`net`), or an overlay address (`ip`). */
  to: { node: string; net?: string; ip?: string };
  /** The payload: an HTTP request to a webserver, or a UDP datagram to a peer. */
  send: "http" | "udp";
  /** In the middle: can it read the payload? */
  middle: Watcher[];
  /** Where the payload comes out in clear: the control that the marker was really sent. */
  exit: Watcher;
  /** Nodes whose keys are counted, with how they hold them. */
  keys: { node: string; kind: "wireguard" | "tailscale" | "control" }[];
  /** Nodes whose config files the person writes (their .conf/.yaml files, read from the lab). */
  configNodes: string[];
  /** Nodes whose `run` steps of setup and solve the person types; exercises that only observe are left out. */
  commandNodes: string[];
  observeExercises: string[];
}

const WG_INTERFACE = (recipe: string) => recipe;

export const SCORE_SPECS: ScoreSpec[] = [
  {
    recipe: "recipe-0",
    from: "peer-1",
    to: { node: "peer-3", ip: "172.16.100.3" },
    send: "udp",
    middle: [{ node: "peer-2", as: "third peer", iface: "any" }],
    exit: { node: "peer-3", as: "far peer", iface: WG_INTERFACE("recipe-0") },
    keys: ["peer-1", "peer-2", "peer-3"].map((node) => ({ node, kind: "wireguard" as const })),
    configNodes: ["peer-1", "peer-2", "peer-3"],
    commandNodes: ["peer-1", "peer-2", "peer-3"],
    observeExercises: ["mesh"],
  },
  {
    recipe: "recipe-1",
    from: "roaming",
    to: { node: "home", ip: "172.16.100.2" },
    send: "udp",
    middle: [{ node: "lighthouse", as: "lighthouse", iface: WG_INTERFACE("recipe-1") }],
    exit: { node: "home", as: "home peer", iface: WG_INTERFACE("recipe-1") },
    keys: ["lighthouse", "home", "roaming"].map((node) => ({ node, kind: "wireguard" as const })),
    configNodes: ["lighthouse", "home", "roaming"],
    commandNodes: ["lighthouse", "home", "roaming"],
    observeExercises: ["ping", "tcp"],
  },
  {
    recipe: "recipe-2",
    from: "roaming",
    to: { node: "webserver", net: "home" },
    send: "http",
    middle: [{ node: "lighthouse", as: "lighthouse", iface: WG_INTERFACE("recipe-2"), filter: "tcp port 80" }],
    exit: { node: "home-router", as: "home router", iface: "any", filter: "tcp port 80" },
    keys: ["lighthouse", "home-router", "roaming"].map((node) => ({ node, kind: "wireguard" as const })),
    configNodes: ["lighthouse", "home-router", "roaming"],
    commandNodes: ["lighthouse", "home-router", "roaming"],
    observeExercises: ["tracepath", "curl", "dirty-secret"],
  },
  {
    recipe: "recipe-3",
    from: "ts-client-roaming",
    to: { node: "webserver", net: "home" },
    send: "http",
    // Headscale is the coordinator and, embedded, the DERP relay: one capture sees both.
    middle: [{ node: "headscale", as: "coordinator + DERP relay", iface: "any" }],
    exit: { node: "ts-client-home", as: "home client (LAN side)", iface: "eth0", filter: "tcp port 80" },
    keys: [
      { node: "headscale", kind: "control" },
      { node: "ts-client-home", kind: "tailscale" },
      { node: "ts-client-roaming", kind: "tailscale" },
    ],
    configNodes: ["headscale"],
    commandNodes: ["headscale", "ts-client-home", "ts-client-roaming"],
    observeExercises: ["nodes-online", "tracepath", "curl", "magicdns", "no-plaintext"],
  },
];

export const SCORE_RECIPES = SCORE_SPECS.map((s) => s.recipe);

export function scoreSpec(recipe: string): ScoreSpec | undefined {
  return SCORE_SPECS.find((s) => s.recipe === recipe);
}

export interface Reach {
  target: string;
  reached: boolean;
  /** tracepath's hop count to the target (the target included). */
  hops?: number;
  /** The addresses on the way, the target last. */
  path: string[];
  /** ping's average round trip. */
  rttMs?: number;
}

export interface Sighting {
  node: string;
  as: string;
  /** The marker is in its capture: it reads the payload. */
  reads: boolean;
  packets: number;
  error?: string;
}

export interface NodeKeys {
  node: string;
  /** Private keys of its own (the WireGuard key of a peer, the node key of a client; 0 for the coordinator). */
  own: number;
  /** Public keys of others it holds (peers; for the coordinator: every node's). */
  others: number;
  /** Where the numbers come from (`wg show`, the config file, `tailscale status`, `headscale nodes list`). */
  from: string;
}

export interface HandWritten {
  /** Non-blank, non-comment lines of the config files, per node. */
  configLines: Record<string, number>;
  /** Commands the reference solution types (setup and solve `run` steps, not observations). */
  commands: number;
  total: number;
}

export interface Scorecard {
  recipe: string;
  title: string;
  lab: string;
  from: string;
  reach: Reach;
  payload: { marker: string; delivered: Sighting; middle: Sighting[] };
  handWritten: HandWritten;
  keys: NodeKeys[];
}

type Sh = (node: string, script: string, timeoutMs?: number) => Promise<{ exitCode: number; stdout: string }>;

function shIn(engine: Engine, plan: LabPlan): Sh {
  return (node, script, timeoutMs = 20_000) => engine.sh(plan.nodes[node]!.container, script, { timeoutMs });
}

export function targetOf(spec: ScoreSpec, plan: LabPlan): string {
  return spec.to.ip ?? plan.nodes[spec.to.node]!.ip[spec.to.net!]!;
}

/** ping's average from "rtt min/avg/max/mdev = 0.1/0.2/0.3/0.0 ms" (iputils). */
export function parsePingAvg(text: string): number | undefined {
  const m = /min\/avg\/max(?:\/mdev)? = [\d.]+\/([\d.]+)\//.exec(text);
  return m ? Number(m[1]) : undefined;
}

/** tracepath -n: the hop addresses in order and "Resume: ... hops N" when the target answered. */
export function parseTracepath(text: string, target: string): { hops?: number; path: string[] } {
  const path: string[] = [];
  for (const line of text.split("\n")) {
    const m = /^\s*\d+:\s+(\d+\.\d+\.\d+\.\d+)\s/.exec(line);
    if (m && path.at(-1) !== m[1]) path.push(m[1]!);
  }
  const resume = /Resume: pmtu \d+ hops (\d+)/.exec(text);
  const reached = resume && path.at(-1) === target;
  return { hops: reached ? Number(resume[1]) : undefined, path };
}

async function measureReach(sh: Sh, spec: ScoreSpec, target: string): Promise<Reach> {
  // The first packet after a quiet spell may wait for a handshake: it is not a round trip.
  await sh(spec.from, `ping -n -c 1 -W 2 ${target}`);
  const ping = await sh(spec.from, `ping -n -c 5 -i 0.2 -W 1 ${target}`);
  const rttMs = parsePingAvg(ping.stdout);
  // Nothing answers: tracepath would only wait hop after hop for no one.
  if (ping.exitCode !== 0 || rttMs === undefined) return { target, reached: false, path: [] };
  const tp = await sh(spec.from, `timeout 20 tracepath -n -m 8 ${target}`, 30_000);
  const { hops, path } = parseTracepath(tp.stdout, target);
  return { target, reached: hops !== undefined, hops, path, rttMs };
}

/** A capture that ends when told (kill) or after `maxS`: its pid. */
async function startCapture(sh: Sh, w: Watcher, file: string, maxS: number): Promise<string> {
  // An interface that is not there yet (the tunnel not up) is a result, said at once.
  if (w.iface !== "any" && (await sh(w.node, `ip link show ${w.iface}`)).exitCode !== 0) throw new Error(`no interface ${w.iface}`);
  const r = await sh(
    w.node,
    `rm -f ${file} ${file}.log; timeout ${maxS} tcpdump -n --immediate-mode -i ${w.iface} -U -w ${file} ${w.filter ?? ""} </dev/null >${file}.log 2>&1 & echo $!; ` +
      `for i in $(seq 50); do grep -q 'listening on' ${file}.log && exit 0; sleep 0.1; done; cat ${file}.log; rm -f ${file} ${file}.log; exit 1`,
  );
  if (r.exitCode !== 0) throw new Error(`tcpdump did not start: ${r.stdout.split("\n").slice(1).join(" ").trim()}`);
  return r.stdout.trim().split("\n")[0]!;
}

/** Stop the capture, read it (marker in it? how many packets?), and remove it. */
async function readCapture(sh: Sh, w: Watcher, file: string, pid: string, marker: string): Promise<Sighting> {
  // Its end is the log's "N packets captured" line: a killed process whose parent is a
  // container's PID 1 may stay a zombie, so `kill -0` cannot tell.
  const r = await sh(
    w.node,
    // A second more for a packet still on its way to this capture; then the capture ends.
    `for i in $(seq 10); do grep -aq '${marker}' ${file} && break; sleep 0.1; done; kill ${pid} 2>/dev/null; for i in $(seq 50); do grep -q 'packets captured' ${file}.log && break; sleep 0.1; done; ` +
      `echo "$(grep -ac '${marker}' ${file}) $(sed -n 's/^\\([0-9]*\\) packets captured.*/\\1/p' ${file}.log)"; rm -f ${file} ${file}.log`,
  );
  const [hits, packets] = r.stdout.trim().split(/\s+/).map(Number);
  return { node: w.node, as: w.as, reads: (hits ?? 0) > 0, packets: packets ?? 0 };
}

/** The marker sent from the roaming node, once; its own exit status does not matter (unreachable is a result). */
function sendScript(spec: ScoreSpec, target: string, marker: string): string {
  return spec.send === "http"
    ? `curl -s -o /dev/null --max-time 3 'http://${target}/?scorecard=${marker}'`
    : `printf '${marker}\\n' | nc -u -w 1 ${target} 9`;
}

/**
 * A unique marker sent from the roaming node to the target while the middle nodes and the exit
 * capture: who has it in clear. The exit's capture is the control that it was sent at all.
 */
async function measurePayload(sh: Sh, spec: ScoreSpec, target: string, signal?: AbortSignal): Promise<Scorecard["payload"]> {
  const marker = `wg3-scorecard-${randomBytes(6).toString("hex")}`;
  const file = `/tmp/${marker}.pcap`;
  const watchers = [spec.exit, ...spec.middle];
  const started = await Promise.allSettled(watchers.map((w) => startCapture(sh, w, file, 15)));
  // A failed send is a result too (nothing to see); the captures are read and removed either way.
  if (!signal?.aborted) {
    await sh(spec.from, sendScript(spec, target, marker)).catch(() => undefined);
    // The exit has it within a moment when it arrives at all; the middle's captures ran as long.
    await sh(spec.exit.node, `for i in $(seq 20); do grep -aq '${marker}' ${file} 2>/dev/null && exit 0; sleep 0.1; done; exit 1`).catch(
      () => undefined,
    );
  }
  const seen = await Promise.all(
    watchers.map((w, i): Promise<Sighting> | Sighting => {
      const s = started[i]!;
      if (s.status === "rejected") return { node: w.node, as: w.as, reads: false, packets: 0, error: (s.reason as Error).message };
      return readCapture(sh, w, file, s.value, marker);
    }),
  );
  return { marker, delivered: seen[0]!, middle: seen.slice(1) };
}

async function wireguardKeys(sh: Sh, node: string, iface: string): Promise<NodeKeys> {
  const live = await sh(node, `wg show ${iface} peers`);
  if (live.exitCode === 0) {
    const priv = await sh(node, `wg show ${iface} private-key >/dev/null && echo 1`);
    return { node, own: priv.stdout.trim() === "1" ? 1 : 0, others: live.stdout.split("\n").filter(Boolean).length, from: "wg show" };
  }
  // Interface down: the config file holds what it would load.
  const conf = await sh(
    node,
    `f=/etc/wireguard/${iface}.conf; echo "$(grep -Ec '^PrivateKey *= *[A-Za-z0-9+/]{43}=' $f) $(grep -Ec '^PublicKey *= *[A-Za-z0-9+/]{43}=' $f)"`,
  );
  const [own, others] = conf.stdout.trim().split(/\s+/).map(Number);
  return { node, own: own ?? 0, others: others ?? 0, from: `${iface}.conf (interface down)` };
}

async function tailscaleKeys(sh: Sh, node: string): Promise<NodeKeys> {
  const r = await sh(node, "tailscale status --json");
  try {
    const s = JSON.parse(r.stdout) as { Self?: { PublicKey?: string }; Peer?: Record<string, unknown> };
    return { node, own: s.Self?.PublicKey ? 1 : 0, others: Object.keys(s.Peer ?? {}).length, from: "tailscale status" };
  } catch {
    return { node, own: 0, others: 0, from: "tailscale status (no answer)" };
  }
}

async function controlKeys(sh: Sh, node: string): Promise<NodeKeys> {
  const r = await sh(node, "headscale nodes list -o json");
  try {
    const nodes = JSON.parse(r.stdout) as unknown[] | null;
    return { node, own: 0, others: (nodes ?? []).length, from: "headscale nodes list" };
  } catch {
    return { node, own: 0, others: 0, from: "headscale nodes list (no answer)" };
  }
}

function measureKeys(sh: Sh, spec: ScoreSpec): Promise<NodeKeys[]> {
  return Promise.all(
    spec.keys.map((k) =>
      k.kind === "wireguard"
        ? wireguardKeys(sh, k.node, WG_INTERFACE(spec.recipe))
        : k.kind === "tailscale"
          ? tailscaleKeys(sh, k.node)
          : controlKeys(sh, k.node),
    ),
  );
}

/** Lines that say something: neither blank nor a comment. */
export function configLineCount(text: string): number {
  return text.split("\n").filter((l) => l.trim() && !/^\s*[#;]/.test(l)).length;
}

/** The `run` steps of setup and of solves a person types to build the lab's network. */
export function typedCommands(recipe: Recipe, spec: ScoreSpec): number {
  const nodes = new Set(spec.commandNodes);
  const actions = [...recipe.setup, ...recipe.exercises.filter((e) => !spec.observeExercises.includes(e.id)).flatMap((e) => e.solve)];
  return actions.filter((a) => a.run && a.node && nodes.has(a.node)).length;
}

async function measureHandWritten(sh: Sh, spec: ScoreSpec, plan: LabPlan, recipe: Recipe): Promise<HandWritten> {
  const configLines: Record<string, number> = {};
  for (const node of spec.configNodes) {
    const files = plan.nodes[node]!.files.map((f) => f.path).filter((p) => /\.(conf|ya?ml)$/.test(p));
    let n = 0;
    for (const f of files) n += configLineCount((await sh(node, `cat '${f}'`)).stdout);
    configLines[node] = n;
  }
  const commands = typedCommands(recipe, spec);
  return { configLines, commands, total: Object.values(configLines).reduce((a, b) => a + b, 0) + commands };
}

/** Everything the scorecard says about one running lab. */
export async function measureScorecard(engine: Engine, plan: LabPlan, recipe: Recipe, signal?: AbortSignal): Promise<Scorecard> {
  const spec = scoreSpec(plan.recipe);
  if (!spec) throw new Error(`${plan.recipe} has no scorecard`);
  const sh = shIn(engine, plan);
  const target = targetOf(spec, plan);
  // Side by side: the captures run on other nodes than the pings, and read nothing but the marker.
  const [reach, payload, keys, handWritten] = await Promise.all([
    measureReach(sh, spec, target),
    measurePayload(sh, spec, target, signal),
    measureKeys(sh, spec),
    measureHandWritten(sh, spec, plan, recipe),
  ]);
  return { recipe: plan.recipe, title: recipe.title, lab: plan.lab, from: spec.from, reach, payload, handWritten, keys };
}
