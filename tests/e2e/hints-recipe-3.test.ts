import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkJson, mistakesShown, mustRun } from "../support/check-json.ts";
import { eventually } from "../support/eventually.ts";
import { LabHandle } from "../support/lab-handle.ts";
import { testLabName } from "../support/labs.ts";
import { TIMEOUT } from "../support/timeouts.ts";

// Recipe-3's state-aware hints, each by making its mistake in a lab that works, then undoing it
// the way the hint says.
describe("recipe-3: state-aware hints, each produced by its mistake", () => {
  let lab: LabHandle;
  const roaming = "ts-client-roaming";
  const lan = () => lab.plan.networks.home!.subnet;
  const failsWith = (exercise: string, hint: RegExp) =>
    eventually(
      `${exercise} failing with the hint ${hint}`,
      async () => {
        const g = (await checkJson(lab))[exercise]!;
        const hints = (g.mistakes ?? []).map((m) => m.hint);
        if (g.state === "pass" || !hints.some((h) => hint.test(h))) throw new Error(`${g.state}; hints: ${JSON.stringify(hints)}`);
        return true;
      },
      { timeout: TIMEOUT.converge },
    );
  const passes = (exercise: string) =>
    eventually(`${exercise} passing again`, async () => (await checkJson(lab))[exercise]!.state === "pass", { timeout: TIMEOUT.converge });

  beforeAll(async () => {
    lab = await LabHandle.start("recipe-3", { lab: testLabName("hint3") });
  });
  afterAll(async () => {
    await lab?.stop();
  });

  it("a working lab shows none of them (negative control)", async () => {
    const graded = await checkJson(lab);
    for (const id of ["nodes-online", "tracepath", "curl", "magicdns"]) {
      expect(graded[id]!.state).toBe("pass");
      expect(graded[id]!.mistakes ?? []).toEqual([]);
    }
  });

  it("accept-routes off on roaming: curl fails and the hint names `tailscale set --accept-routes`", async () => {
    await mustRun(lab, roaming, "tailscale set --accept-routes=false");
    await failsWith("curl", /roaming ignores the routes its peers advertise .*`tailscale set --accept-routes`/);
    await mustRun(lab, roaming, "tailscale set --accept-routes");
    await passes("curl");
    expect(await mistakesShown(lab, "curl")).toEqual([]);
  });

  it("the route not approved: tracepath fails and the hint says to approve it", async () => {
    await mustRun(lab, "headscale", 'headscale nodes approve-routes -i 1 -r ""');
    await failsWith("tracepath", new RegExp(`home advertises ${lan().replaceAll(".", "\\.")}, but Headscale has not approved the route`));
    await mustRun(lab, "headscale", `headscale nodes approve-routes -i 1 -r ${lan()}`);
    await passes("tracepath");
  });

  it("accept-dns off on roaming: magicdns fails and the hint names `tailscale set --accept-dns`", async () => {
    await mustRun(lab, roaming, "tailscale set --accept-dns=false");
    await failsWith("magicdns", /ts-client-roaming does not use the tailnet's DNS .*`tailscale set --accept-dns`/);
    await mustRun(lab, roaming, "tailscale set --accept-dns");
    await passes("magicdns");
  });

  it("tailscale down on home: nodes-online fails once Headscale sees it offline, and the hint says `tailscale up`", async () => {
    await mustRun(lab, "ts-client-home", "tailscale down");
    await failsWith("nodes-online", /ts-client-home: Tailscale is stopped .*run `tailscale up`/);
  });
});
