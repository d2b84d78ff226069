import type { LoadClient } from "./loadgen.ts";

/**
 * The one place that knows src/control/client.ts's API. Wire it here when that module lands:
 *
 *   startNode({ serverUrl, authKey, hostname, onPeers, signal }):
 *     1. GET  {serverUrl}/key?v=<capver>           -> the server's Noise public key
 *     2. POST {serverUrl}/ts2021 (Upgrade)          -> Noise IK, HTTP/2 over the Noise stream
 *     3. POST /machine/register { NodeKey, Auth: { AuthKey }, Hostinfo: { Hostname } }
 *     4. POST /machine/map { Stream: true, ... }    -> length-prefixed zstd frames; keep the
 *        peer set from the full netmap and apply PeersChanged / PeersRemoved, then call
 *        onPeers(peerSet.size) after each frame (keep-alives included is fine)
 *     close(): end the stream and the connection.
 *
 * A module that already exports `createLoadClient(): LoadClient` is used as is.
 */
export function adaptClient(mod: Record<string, unknown>): LoadClient | { unavailable: string } {
  if (typeof mod.createLoadClient === "function") return (mod.createLoadClient as () => LoadClient)();
  return {
    unavailable: `src/control/client.ts exists (exports: ${Object.keys(mod).join(", ") || "none"}) but bench/control/client-adapter.ts does not wire it yet`,
  };
}
