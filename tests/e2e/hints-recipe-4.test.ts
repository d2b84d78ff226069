import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkJson, mustRun } from "../support/check-json.ts";
import { eventually } from "../support/eventually.ts";
import { LabHandle } from "../support/lab-handle.ts";
import { testLabName } from "../support/labs.ts";
import { startTs } from "../support/start-ts.ts";
import { TIMEOUT } from "../support/timeouts.ts";

// Recipe-4's state-aware hints, each by making its mistake where the stages lead, then fixing
// it the way the hint says. The probes read routers, clients and capture files, never the
// control server: the builtin one (the faster start) stands for both.
describe("recipe-4: state-aware hints, each produced by its mistake", () => {
  let lab: LabHandle;
  const web = () => lab.ip("webserver", "site-a");
  const set = async (...values: string[]) => {
    const r = await startTs(["set", "recipe-4", ...values, "--lab", lab.plan.lab]);
    if (r.code !== 0) throw new Error(`set ${values.join(" ")} exited ${r.code}: ${r.stdout}${r.stderr}`);
  };
  const failsWith = (exercise: string, hint: RegExp) =>
    eventually(
      `${exercise} failing with the hint ${hint}`,
      async () => {
        const g = (await checkJson(lab, exercise))[exercise]!;
        const hints = (g.mistakes ?? []).map((m) => m.hint);
        if (g.state === "pass" || !hints.some((h) => hint.test(h))) throw new Error(`${g.state}; hints: ${JSON.stringify(hints)}`);
        return true;
      },
      { timeout: TIMEOUT.converge },
    );
  const passes = (exercise: string) =>
    eventually(`${exercise} passing`, async () => (await checkJson(lab, exercise))[exercise]!.state === "pass", {
      timeout: TIMEOUT.converge,
    });

  beforeAll(async () => {
    lab = await LabHandle.start("recipe-4", { lab: testLabName("hint4"), options: { control: "builtin" } });
  });
  afterAll(async () => {
    await lab?.stop();
  });

  it("a fresh lab shows none of them, on any exercise (negative control)", async () => {
    await passes("easy-direct");
    const graded = await checkJson(lab);
    for (const g of Object.values(graded)) expect(g.mistakes ?? [], g.id).toEqual([]);
  });

  it("the hard NAT set on site A: hard-relayed names nat-a=easy nat-b=hard, and passes once that is set", async () => {
    await set("nat-a=hard");
    await failsWith("hard-relayed", /hard NAT is on site A's router .*set recipe-4 nat-a=easy nat-b=hard/);
    await set("nat-a=easy", "nat-b=hard");
    await passes("hard-relayed");
  });

  it("the port forward made on site A: forward-fix names nat-a=easy nat-b=forwarded, and passes once that is set", async () => {
    await set("nat-a=forwarded");
    await failsWith("forward-fix", /port forward is on site A's router .*set recipe-4 nat-a=easy nat-b=forwarded/);
    await set("nat-a=easy", "nat-b=forwarded");
    await passes("forward-fix");
  });

  it("UDP blocked at site B: udp-blocked names nat-a=udp-blocked nat-b=forwarded, and passes once that is set", async () => {
    await set("nat-b=udp-blocked");
    await failsWith("udp-blocked", /UDP is blocked at site B .*set recipe-4 nat-a=udp-blocked nat-b=forwarded/);
    await set("nat-a=udp-blocked", "nat-b=forwarded");
    await passes("udp-blocked");
  });

  it("captures in the wrong place or at the wrong time: derp-capture says which, and neither once it is done right", async () => {
    // The relay's capture run on ts-b, and site A's LAN captured but b's request sent after it ended.
    await mustRun(lab, "ts-b", "timeout 3 tcpdump -i any -U -w /tmp/derp.pcap tcp port 443 >/dev/null 2>&1; test -e /tmp/derp.pcap");
    await mustRun(lab, "webserver", "timeout 3 tcpdump -i eth0 -U -w /tmp/lan.pcap tcp port 80 >/dev/null 2>&1; test -e /tmp/lan.pcap");
    await mustRun(lab, "ts-b", `curl -s --max-time 10 -o /dev/null 'http://${web()}/?${String(lab.recipe.vars.secret)}'`);
    await failsWith("derp-capture", /^\/tmp\/derp\.pcap is on ts-b, not on the relay/);
    await failsWith("derp-capture", /capture on site A's LAN .* has no request with the secret/);

    await mustRun(lab, "ts-b", "rm /tmp/derp.pcap");
    await lab.solve("derp-capture");
    await passes("derp-capture");
  });

  it("tailscale down on ts-a: udp-blocked names it and `tailscale up`, and passes once ts-a is up again", async () => {
    await mustRun(lab, "ts-a", "tailscale down");
    await failsWith("udp-blocked", /^ts-a: Tailscale is stopped .*run `tailscale up`/);
    const server = `https://${lab.ip("headscale", "internet")}`;
    await mustRun(
      lab,
      "ts-a",
      `tailscale up --login-server ${server} --hostname a --advertise-routes=${lab.plan.networks["site-a"]!.subnet}`,
    );
    await passes("udp-blocked");
  });
});
