import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mistakesShown } from "../support/check-json.ts";
import { eventually } from "../support/eventually.ts";
import { LabHandle } from "../support/lab-handle.ts";
import { testLabName } from "../support/labs.ts";

// Recipe-5's node key expiry exercise (seed 004: short-lived keys), against Headscale and the
// builtin control server: node.expiry from the config, an admin's `headscale nodes expire`,
// what bob's client and the server's client then report, the traffic that stops, the new login.
const controls = (process.env.WG3_CONTROLS ?? "headscale,builtin").split(",");
const DAY_MS = 86_400_000;

interface StatusNode {
  HostName: string;
  PublicKey: string;
  KeyExpiry?: string;
  Expired?: boolean;
}
interface Status {
  BackendState: string;
  Self: StatusNode;
  Peer: Record<string, StatusNode>;
}

describe.each(controls)("recipe-5 with --control %s: node key expiry", (control) => {
  let lab: LabHandle;
  const labName = testLabName(`r5x-${control.slice(0, 2)}`);
  const loginServer = () => `https://${lab.ip("headscale", "internet")}`;
  const status = async (node: string) => JSON.parse((await lab.sh(node, "tailscale status --json")).stdout) as Status;
  /** The probe of the exercise: bob to the server's web, through the tailnet. */
  const bobReachesWeb = () => lab.succeeds("ts-bob", "nc -z -w 2 $(tailscale ip -4 server) 80");
  const headscale = async (args: string) => {
    const r = await lab.sh("headscale", `headscale ${args}`);
    expect(r.exitCode, `headscale ${args}: ${r.stderr}`).toBe(0);
    return r.stdout;
  };

  /** The state-aware hints `./start.ts check --json` shows for the exercise now. */
  const mistakes = async () => (await mistakesShown(lab, "key-expiry")).join(" | ");

  beforeAll(async () => {
    lab = await LabHandle.start("recipe-5", { lab: labName, options: { control } });
  });
  afterAll(async () => {
    await lab?.stop();
  });

  it("key-expiry: before anything expired the check fails (negative control)", async () => {
    expect((await lab.check("key-expiry")).ok).toBe(false);
    expect(await mistakes()).toContain("bob's key has not expired yet");
  });

  it("node.expiry: bob's key expires seven days after his login; the tagged server's never", async () => {
    const bob = (await status("ts-bob")).Self;
    const left = Date.parse(bob.KeyExpiry!) - Date.now();
    console.log(`[${control}] bob's KeyExpiry ${bob.KeyExpiry} (${(left / DAY_MS).toFixed(3)} days ahead)`);
    expect(left).toBeGreaterThan(7 * DAY_MS - 3_600_000);
    expect(left).toBeLessThanOrEqual(7 * DAY_MS);
    expect((await status("ts-server")).Self.KeyExpiry).toBeUndefined();
  });

  it("nodes expire: bob's client is logged out, the server sees him Expired, and the probe that passed fails; the check still fails", async () => {
    expect(await bobReachesWeb()).toBe(true);
    expect(await headscale("nodes expire --identifier 3")).toMatch(/Node expired/);
    await eventually("bob's client: NeedsLogin", async () => (await status("ts-bob")).BackendState === "NeedsLogin");
    const said = await lab.sh("ts-bob", "tailscale status");
    const self = (await status("ts-bob")).Self;
    const seen = Object.values((await status("ts-server")).Peer).find((p) => p.HostName === "bob")!;
    console.log(
      `[${control}] bob after nodes expire: "tailscale status" exit ${said.exitCode}: ${said.stdout.trim()}; Self.Expired ${self.Expired}, ` +
        `KeyExpiry ${self.KeyExpiry}; the server's view of bob: Expired ${seen?.Expired}, KeyExpiry ${seen?.KeyExpiry}`,
    );
    expect(said.exitCode).not.toBe(0);
    expect(said.stdout).toContain("Logged out.");
    expect(self.Expired).toBe(true);
    expect(Date.parse(self.KeyExpiry!)).toBeLessThanOrEqual(Date.now());
    await eventually("the server's client marks bob Expired", async () => {
      const p = Object.values((await status("ts-server")).Peer).find((x) => x.HostName === "bob");
      return p?.Expired === true;
    });
    expect(await bobReachesWeb()).toBe(false);
    expect(await mistakes()).toContain("save what his client reports");
    // The attendee saves what bob's client reported; logged out still, the check fails.
    expect((await lab.sh("ts-bob", "tailscale status --json > /root/expired-status.json")).exitCode).toBe(0);
    expect((await lab.check("key-expiry")).ok).toBe(false);
    expect(await mistakes()).toContain("bob is still logged out");
  });

  it("a new login (tailscale up with a new key): the same node, a new expiry from node.expiry, the traffic back; the check passes, and after solve", async () => {
    const key = (JSON.parse(await headscale("preauthkeys create -u 2 -o json")) as { key: string }).key;
    const up = await lab.sh("ts-bob", `tailscale up --login-server ${loginServer()} --auth-key ${key} --hostname bob --timeout 60s 2>&1`);
    expect(up.exitCode, up.stdout).toBe(0);
    const bob = await status("ts-bob");
    expect(bob.BackendState).toBe("Running");
    expect(Date.parse(bob.Self.KeyExpiry!) - Date.now()).toBeGreaterThan(7 * DAY_MS - 120_000);
    const nodes = JSON.parse(await headscale("nodes list -o json")) as { id: number; name: string }[];
    expect(nodes.filter((n) => n.name === "bob").map((n) => n.id)).toEqual([3]);
    await eventually("bob reaches the server's web again", bobReachesWeb);
    expect((await lab.check("key-expiry")).ok).toBe(true);
    expect(await mistakes()).toBe("");
    // The reference solution does it all again, from a running bob.
    await lab.solve("key-expiry");
    expect((await lab.check("key-expiry")).ok).toBe(true);
  });
});
