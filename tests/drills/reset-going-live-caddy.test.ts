import { describe, it } from "vitest";
import { resetSuite } from "../e2e/reset.suite.ts";
import { ALL } from "./lib.ts";

// reset --to every exercise of going-live --layout caddy: each reset redoes the lab's Tailscale setup (several minutes in
// all), so `npm run test:drills` (WG3_DRILLS=all) runs it and `npm test` does not.
if (ALL)
  resetSuite({
    recipe: "going-live",
    // The caddy layout has exercises of its own (caddy, proxy-upgrade) instead of certificate.
    options: { layout: "caddy" },
  });
else
  describe.skip("reset --to every exercise of going-live --layout caddy (npm run test:drills)", () =>
    it("runs with WG3_DRILLS=all", () => {}));
