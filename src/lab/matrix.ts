import type { Engine } from "../engine/engine.ts";
import { TailscaleInContainer } from "../nodes/tailscale.ts";
import type { Recipe } from "../recipe/types.ts";
import type { LabPlan } from "./plan.ts";

/**
 * The reachability matrix: every source x destination x port of a recipe's `reachability`,
 * probed with a real TCP connection from the source container to the destination's tailnet
 * address, beside what the recipe intends. "Visible" is the source's own `tailscale status`:
 * a peer can be listed there (the control server sent it) and still be blocked by the packet
 * filter, which is the case worth seeing.
 */

/** open: connected; refused: the packet arrived, nothing listens; blocked: no answer in time. */
export type Outcome = "open" | "refused" | "blocked";

export interface MatrixCell {
  from: string;
  to: string;
  port: number;
  intended: "open" | "blocked";
  actual: Outcome;
  /** The destination is a peer in the source's `tailscale status`. */
  visible: boolean;
  /** What nc said (its last attempt). */
  said: string;
  match: boolean;
}

export interface MatrixReport {
  at: string;
  addresses: Record<string, string>;
  cells: MatrixCell[];
  matches: boolean;
}

/** How long one probe waits for a TCP handshake (blocked flows wait this long). */
export const PROBE_TIMEOUT_S = 2;

export const reached = (o: Outcome): boolean => o !== "blocked";

/** Probes run in parallel in one shell per source: one line "ip:port rc|nc's words" each. */
export function probeScript(targets: string[]): string {
  return (
    `for t in ${targets.join(" ")}; do ( r=$(nc -zv -w ${PROBE_TIMEOUT_S} "\${t%:*}" "\${t#*:}" 2>&1); rc=$?; ` +
    // One printf per line: a single small write, so parallel probes never interleave mid-line.
    `printf '%s\\n' "$t $rc|$(echo "$r" | tr '\\n' ' ')" ) & done; wait`
  );
}

export function parseProbes(stdout: string): Map<string, { outcome: Outcome; said: string }> {
  const out = new Map<string, { outcome: Outcome; said: string }>();
  for (const line of stdout.split("\n")) {
    const m = /^(\S+) (\d+)\|(.*)$/.exec(line.trim());
    if (!m) continue;
    const said = m[3]!.trim();
    out.set(m[1]!, { outcome: m[2] === "0" ? "open" : /refused/i.test(said) ? "refused" : "blocked", said });
  }
  return out;
}

export async function observeMatrix(engine: Engine, plan: LabPlan, recipe: Recipe): Promise<MatrixReport> {
  const r = recipe.reachability;
  if (!r) throw new Error(`${recipe.name} declares no reachability`);
  const ts = (n: string) => new TailscaleInContainer(engine, plan.nodes[n]!.container);
  const addresses: Record<string, string> = {};
  await Promise.all(
    r.nodes.map(async (n) => {
      addresses[n] = await ts(n)
        .ip()
        .catch(() => "");
    }),
  );
  const intendedOpen = (from: string, to: string, port: number) =>
    r.allow.some((a) => a.from === from && a.to === to && a.ports.includes(port));
  const cells: MatrixCell[] = [];
  await Promise.all(
    r.nodes.map(async (from) => {
      const dsts = r.nodes.filter((to) => to !== from && addresses[to]);
      const targets = dsts.flatMap((to) => r.ports.map((p) => `${addresses[to]}:${p}`));
      const [probe, status] = await Promise.all([
        engine.sh(plan.nodes[from]!.container, probeScript(targets)),
        ts(from)
          .status()
          .catch(() => undefined),
      ]);
      const outcomes = parseProbes(probe.stdout);
      const peers = new Set(Object.values(status?.Peer ?? {}).flatMap((p) => p.TailscaleIPs));
      for (const to of r.nodes.filter((t) => t !== from))
        for (const port of r.ports) {
          const probe = outcomes.get(`${addresses[to]}:${port}`);
          const actual = probe?.outcome ?? "blocked";
          const intended = intendedOpen(from, to, port) ? "open" : "blocked";
          cells.push({
            from,
            to,
            port,
            intended,
            actual,
            visible: peers.has(addresses[to] ?? "-"),
            said: probe?.said ?? (addresses[to] ? "no probe result" : `${to} has no tailnet address`),
            match: reached(actual) === (intended === "open"),
          });
        }
    }),
  );
  const order = (c: MatrixCell) => [r.nodes.indexOf(c.from), r.nodes.indexOf(c.to), r.ports.indexOf(c.port)];
  cells.sort((a, b) => {
    const [x, y] = [order(a), order(b)];
    return x[0]! - y[0]! || x[1]! - y[1]! || x[2]! - y[2]!;
  });
  return { at: new Date().toISOString(), addresses, cells, matches: cells.every((c) => c.match) };
}

/** A cell as the table shows it: "open", "refused (reached)", "blocked", "blocked (visible)". */
export function actualText(c: MatrixCell): string {
  if (c.actual === "refused") return "reached (nothing listens)";
  if (c.actual === "blocked" && c.visible) return "visible but blocked";
  return c.actual;
}
