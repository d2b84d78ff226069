import { readFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { fetchServerKey } from "../../src/control/client.ts";
import { cleanup, HostControl, tempDir } from "./tailscaled-host.ts";

/**
 * handshake_timeout also bounds the TLS handshake (Node's default is 120 s): a peer that opens
 * a connection to the HTTPS control port and sends nothing is dropped, and a real client that
 * does speak TLS is served meanwhile.
 */
describe("TLS handshake bound", () => {
  const dir = tempDir("wg3-control-tls-");
  const ctl = new HostControl(join(dir, "control"), 0, 0, ["limits: { handshake_timeout: 1s }"]);
  afterAll(async () => {
    await ctl.stop();
    cleanup(dir);
  });

  it("a silent connection is closed after handshake_timeout; a TLS client gets /key", async () => {
    await ctl.start();
    const silent = net.connect(ctl.port, "127.0.0.1");
    silent.on("error", () => {});
    const t0 = Date.now();
    const closed = new Promise<number>((r) => silent.once("close", () => r(Date.now() - t0)));
    const key = await fetchServerKey(ctl.url, 138, { ca: readFileSync(ctl.caFile, "utf8") });
    expect(key.length).toBe(32);
    const after = await closed;
    expect(after).toBeGreaterThan(900);
    expect(after).toBeLessThan(5_000);
  });
});
