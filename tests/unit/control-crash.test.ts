import { cpSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { adminCall } from "../../src/control/admin.ts";
import { ControlClient } from "../../src/control/client.ts";
import { formatKey, newKeyPair } from "../../src/control/keys.ts";
import { StateStore } from "../../src/control/store.ts";
import { Tailnet } from "../../src/control/tailnet.ts";
import { TIMEOUT } from "../support/timeouts.ts";
import { serve, stop } from "./control-fixtures/child-server.ts";

/**
 * Crash safety of the state: the real server process (src/control/main.ts) is SIGKILLed at
 * every step of the commit that registers a node (WG3_CONTROL_CRASH_AT_STEP=N), and the state
 * it leaves is reloaded: the commit is wholly there or wholly absent (node present exactly
 * when its single-use key is marked used), acknowledged registrations are never lost, earlier
 * commits are intact, and the next ID handed out collides with none on disk.
 */

const root = mkdtempSync(join(tmpdir(), "wg3-crash-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const opts = { v4Prefix: "100.64.0.0/10", v6Prefix: "fd7a:115c:a1e0::/48", baseDomain: "tailnet.test" };
const nodeKey = () => formatKey("nodekey", newKeyPair().publicKey);

async function register(url: string, authKey: string, hostname: string): Promise<"ack" | "lost"> {
  try {
    const c = await ControlClient.connect({ url });
    const r = await c.register({ nodeKey: nodeKey(), authKey, hostname });
    c.close();
    return r.MachineAuthorized === true ? "ack" : "lost";
  } catch {
    return "lost"; // the server died before it answered
  }
}

describe("crash-safe state: SIGKILL at every step of a commit", () => {
  it("loses at most the interrupted commit, never half of it, and never hands out an ID twice", { timeout: 120_000 }, async () => {
    // A tailnet with one user, one node (ID 1) and an unused single-use key for the next node.
    const template = join(root, "template");
    const s = await serve(template);
    let k2: { key: string; id: number };
    try {
      await adminCall(s.socket, "POST", "/users", { name: "hope" });
      const k1 = await adminCall<{ key: string }>(s.socket, "POST", "/preauthkeys", { user: "hope" });
      k2 = await adminCall<{ key: string; id: number }>(s.socket, "POST", "/preauthkeys", { user: "hope" });
      expect(await register(s.url, k1.key, "first")).toBe("ack");
    } finally {
      await stop(s); // a failed expectation must not leave the server process behind
    }

    const results: string[] = [];
    for (let step = 1; step < 30; step++) {
      const dir = join(root, `step-${step}`);
      cpSync(template, dir, { recursive: true });
      const srv = await serve(dir, step);
      // A killed server never answers: the client sees its connection drop.
      const outcome = await Promise.race([register(srv.url, k2.key, "second"), srv.exited.then(() => "lost" as const)]);
      // An acknowledged registration means its commit finished: no step was left to kill at.
      const killed =
        outcome === "ack" ? "alive" : await Promise.race([srv.exited, new Promise((r) => setTimeout(() => r("alive"), TIMEOUT.short))]);
      await stop(srv);

      const logs: string[] = [];
      const t = new Tailnet(new StateStore(join(dir, "state"), (m) => logs.push(m)), opts);
      const second = t.nodes().find((n) => n.givenName === "second");
      const keyUsed = t.preAuthKeys().find((k) => k.id === k2.id)!.used;
      const replayed = logs.some((l) => l.includes("finished an interrupted commit"));
      results.push(
        `step ${step}: ${killed === "SIGKILL" ? "killed" : "completed"}, ${outcome}, node ${second ? "kept" : "gone"}${replayed ? " (journal replayed)" : ""}`,
      );
      expect(t.nodes()[0]?.givenName, results.at(-1)).toBe("first"); // earlier commits intact
      expect(Boolean(second), results.at(-1)).toBe(keyUsed); // all or nothing
      if (outcome === "ack") expect(second, results.at(-1)).toBeDefined(); // acknowledged = durable
      // The next registration gets an ID no record on disk has.
      const ids = t.nodes().map((n) => n.id);
      const k3 = t.createPreAuthKey("hope", {}).key;
      const third = t.registerWithKey({
        machineKey: formatKey("mkey", newKeyPair().publicKey),
        nodeKey: nodeKey(),
        authKey: k3,
        hostinfo: {},
        cap: 138,
      });
      expect(ids, results.at(-1)).not.toContain(third.id);
      await t.flush();
      if (killed !== "SIGKILL") break; // the commit has fewer steps than this: all were covered
    }
    process.stdout.write(`${results.join("\n")}\n`);
    // Negative control: the hook did kill the server at the early steps, losing the unacknowledged commit.
    expect(results[0]).toMatch(/killed, lost, node gone/);
    expect(results.filter((r) => r.includes("killed")).length).toBeGreaterThanOrEqual(6);
    expect(results.at(-1)).toMatch(/completed, ack, node kept$/);
    // Killed after the journal's rename and before its removal, the reload finished the commit.
    expect(results.slice(1, -2).every((r) => r.endsWith("(journal replayed)"))).toBe(true);
  });

  it("a stale meta.json (counters behind the records on disk) does not make a duplicate ID", async () => {
    const dir = join(root, "stale");
    const t = new Tailnet(new StateStore(dir), opts);
    const key = t.createPreAuthKey(t.createUser("u").id, { reusable: true }).key;
    const reg = (h: string) =>
      t.registerWithKey({
        machineKey: formatKey("mkey", newKeyPair().publicKey),
        nodeKey: nodeKey(),
        authKey: key,
        hostinfo: { Hostname: h },
        cap: 138,
      });
    reg("a");
    await t.flush();
    const meta = join(dir, "meta.json");
    const old = (await import("node:fs")).readFileSync(meta, "utf8");
    reg("b");
    await t.flush();
    writeFileSync(meta, old); // the crash the issue simulated: meta.json from before node 2
    const again = new Tailnet(new StateStore(dir), opts);
    const c = again.registerWithKey({
      machineKey: formatKey("mkey", newKeyPair().publicKey),
      nodeKey: nodeKey(),
      authKey: key,
      hostinfo: { Hostname: "c" },
      cap: 138,
    });
    expect(again.nodes().map((n) => n.id)).toEqual([1, 2, 3]);
    expect(c.id).toBe(3);
    await again.flush();
  });
});
