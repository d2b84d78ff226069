/**
 * What one simulated node knows from its map stream, and the conditions the benchmark waits
 * for (every node has all peers, has dropped one, has seen new endpoints, has a fresh map).
 * Pure: the worker processes apply messages here and report when all their nodes satisfy.
 */
import type { MapSummary, WirePeer } from "./map-scan.ts";

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

/** Apply one MapResponse (full netmap or delta), as summarised by map-scan.ts, to what the node knows. */
export function applyMap(s: NodeState, m: MapSummary, w: Watch | undefined): void {
  if (m.nodeId !== undefined) s.id = m.nodeId;
  const want = w?.kind === "endpoints" ? w.want : undefined;
  const note = (p: WirePeer) => {
    if (want && p.endpoints !== undefined && want[p.id] === endpointsKey(p.endpoints)) s.seen.add(p.id);
  };
  const add = (p: WirePeer) => {
    // A server that shares one delta between all streams also lists the node itself.
    if (p.id === s.id) return;
    s.peers.add(p.id);
    note(p);
  };
  if (m.peers) {
    s.peers.clear();
    for (const p of m.peers) add(p);
    if (m.node) s.fresh = true;
  }
  for (const p of m.changed) add(p);
  for (const p of m.patched) note(p);
  for (const id of m.removed) s.peers.delete(id);
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
