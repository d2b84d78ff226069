import { ControlClient, type MapStream } from "../../src/control/client.ts";
import { formatKey, nativeX25519 } from "../../src/control/keys.ts";
import { REAL_MAP, REAL_REGISTER } from "../../tests/unit/control-fixtures/requests.ts";

/**
 * What the load generator needs from a Tailscale control-protocol client: this repo's
 * src/control/client.ts, adapted below.
 */
export interface SimulatedNode {
  /** End the map stream and the Noise connection. */
  close(): Promise<void>;
  /** Report new endpoints in a lite update, as tailscaled does when its address changes. */
  moveTo(endpoints: string[]): Promise<void>;
}

export interface LoadClient {
  /**
   * Register one new node (fresh machine, node and disco keys) with `authKey` over
   * POST /ts2021 (Noise) + /machine/register, then hold a streaming POST /machine/map
   * (Stream: true), and pass every map response (full netmap or delta) to `onMessage` as the
   * zstd frame it came in (the worker decodes it, or knows it already: map-scan.ts).
   */
  startNode(opts: {
    serverUrl: string;
    authKey: string;
    hostname: string;
    onMessage: (zstdFrame: Buffer) => void;
    /** Bytes of map messages received, as they came over the wire (compressed or not). */
    onBytes?: (n: number) => void;
    /** The server ended the node's map stream and the node polled again. */
    onReset?: () => void;
    /**
     * Behave like tailscaled 1.98 (recorded): its whole Hostinfo at registration, the stream
     * request without endpoints, then a lite update with NetInfo and four endpoints. Otherwise
     * a minimal Hostinfo (Hostname, OS) and no endpoints.
     */
    realistic?: boolean;
    signal: AbortSignal;
  }): Promise<SimulatedNode>;
}

/** Four endpoints as a host behind NAT reports them: a STUN-mapped public one, two LAN, one IPv6. */
export function endpointsOf(random: () => number = Math.random): string[] {
  const b = () => 1 + Math.floor(random() * 254);
  const port = 20000 + Math.floor(random() * 40000);
  return [
    `198.51.100.${b()}:${port}`,
    `192.168.${b()}.${b()}:${port}`,
    `10.${b()}.${b()}.${b()}:${port}`,
    `[2001:db8::${b().toString(16)}]:${port}`,
  ];
}

/**
 * The load generator's view of src/control/client.ts (the client side of the protocol,
 * built on the server's own Noise, key and framing code): one simulated node = one Noise
 * connection, one registration with the pre-auth key, one streaming map request. A stream the
 * server ends is polled again, as tailscaled does.
 */
export function repoLoadClient(): LoadClient {
  return {
    async startNode({ serverUrl, authKey, hostname, onMessage, onBytes, onReset, realistic, signal }): Promise<SimulatedNode> {
      const client = await ControlClient.connect({ url: serverUrl });
      try {
        const nodeKey = formatKey("nodekey", nativeX25519.newKeyPair().publicKey);
        const hostinfo = realistic ? REAL_REGISTER.Hostinfo : undefined;
        const reg = (await client.register({ nodeKey, authKey, hostname, hostinfo })) as {
          MachineAuthorized?: boolean;
          Error?: string;
          AuthURL?: string;
        };
        if (reg.Error || !reg.MachineAuthorized)
          throw new Error(
            `${hostname} not authorized: ${reg.Error || (reg.AuthURL ? "the server wants interactive login" : JSON.stringify(reg).slice(0, 200))}`,
          );
        let closed = false;
        let conn = client;
        const discoKey = formatKey("discokey", nativeX25519.newKeyPair().publicKey);
        const stream = { nodeKey, discoKey, hostname, hostinfo };
        const onFrame = (frame: Buffer) => {
          onBytes?.(4 + frame.length);
          onMessage(frame);
        };
        let map = await conn.mapStreamFrames(stream, onFrame);
        if (map.status !== 200) throw new Error(`${hostname}: map request answered ${map.status}`);
        if (realistic) {
          const lite = await conn.liteUpdate({ ...stream, hostinfo: REAL_MAP.Hostinfo, endpoints: endpointsOf() });
          if (lite !== 200) throw new Error(`${hostname}: lite update answered ${lite}`);
        }
        // Like tailscaled: when the server ends the long-poll (Headscale does, to connections
        // it thinks are stale), poll again, on a new Noise connection if the old one is gone.
        const repoll = async (): Promise<void> => {
          await map.done;
          if (closed || signal.aborted) return;
          onReset?.();
          map = await pollAgain();
          return repoll();
        };
        // The same connection if it still works, else a new one, with backoff while the
        // server is away (a restart), as tailscaled does.
        const pollAgain = async (): Promise<MapStream> => {
          for (let delay = 100; ; delay = Math.min(delay * 2, 2_000)) {
            try {
              return await conn.mapStreamFrames(stream, onFrame);
            } catch {
              conn.close();
              if (closed || signal.aborted) throw new Error("closed");
              await new Promise((r) => setTimeout(r, delay));
              conn = await ControlClient.connect({ url: serverUrl, machine: conn.machine }).catch(() => conn);
            }
          }
        };
        repoll().catch(() => {});
        const close = async () => {
          closed = true;
          map.close();
          conn.close();
        };
        signal.addEventListener("abort", () => void close(), { once: true });
        const moveTo = async (endpoints: string[]) => {
          const lite = await conn.liteUpdate({ ...stream, hostinfo: realistic ? REAL_MAP.Hostinfo : hostinfo, endpoints });
          if (lite !== 200) throw new Error(`${hostname}: lite update answered ${lite}`);
        };
        return { close, moveTo };
      } catch (e) {
        client.close();
        throw e;
      }
    },
  };
}
