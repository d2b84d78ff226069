/**
 * What one simulated node knows from its map stream, and the conditions the benchmark waits
 * for (every node has all peers, has dropped one, has seen new endpoints, has a fresh map).
 * Pure: the worker processes apply messages here and report when all their nodes satisfy.
 */

export interface NodeState {
  /** The node's own ID, from `Node` in its first full map. */
  id?: string;
  peers: Set<string>;
  /** Peer IDs whose wanted endpoints (see Watch "endpoints") arrived since the watch began. */
  seen: Set<string>;
  /** A full netmap arrived since the watch began. */
  fresh: boolean;
}

/** What every node must satisfy for a phase to be over. */
export type Watch =
  | { kind: "peers"; atLeast: number }
  | { kind: "gone"; id: string }
  /** Peer ID -> its new endpoints (endpointsKey). */
  | { kind: "endpoints"; want: Record<string, string> }
  /** A full netmap since the watch began, with at least this many peers. */
  | { kind: "fresh"; atLeast: number };

export function newNodeState(): NodeState {
  return { peers: new Set(), seen: new Set(), fresh: false };
}

/** Endpoints compared as a set: servers may keep them in another order. */
export function endpointsKey(eps: readonly string[] | undefined | null): string {
  return [...(eps ?? [])].sort().join(",");
}

/** Forget what the previous watch collected. */
export function beginWatch(s: NodeState): void {
  s.seen.clear();
  s.fresh = false;
}

interface WireNode {
  ID?: number | string;
  Endpoints?: string[] | null;
}
interface WirePatch {
  NodeID?: number | string;
  Endpoints?: string[] | null;
}

/** Apply one MapResponse (full netmap or delta) to what the node knows. */
export function applyMap(s: NodeState, m: Record<string, unknown>, w: Watch | undefined): void {
  const node = m.Node as WireNode | undefined;
  if (node?.ID !== undefined) s.id = String(node.ID);
  const want = w?.kind === "endpoints" ? w.want : undefined;
  const note = (id: string, eps: string[] | null | undefined) => {
    if (want && eps !== undefined && want[id] === endpointsKey(eps)) s.seen.add(id);
  };
  const add = (p: WireNode) => {
    const id = String(p.ID);
    // A server that shares one delta between all streams also lists the node itself.
    if (id === s.id) return;
    s.peers.add(id);
    note(id, p.Endpoints);
  };
  if (Array.isArray(m.Peers)) {
    s.peers.clear();
    for (const p of m.Peers as WireNode[]) add(p);
    if (node) s.fresh = true;
  }
  for (const p of (m.PeersChanged as WireNode[] | undefined) ?? []) add(p);
  for (const p of (m.PeersChangedPatch as WirePatch[] | undefined) ?? []) note(String(p.NodeID), p.Endpoints);
  for (const id of (m.PeersRemoved as (number | string)[] | undefined) ?? []) s.peers.delete(String(id));
}

export function satisfies(s: NodeState, w: Watch): boolean {
  switch (w.kind) {
    case "peers":
      return s.peers.size >= w.atLeast;
    case "gone":
      return s.id !== undefined && !s.peers.has(w.id);
    case "endpoints":
      return Object.keys(w.want).every((id) => id === s.id || s.seen.has(id));
    case "fresh":
      return s.fresh && s.peers.size >= w.atLeast;
  }
}
