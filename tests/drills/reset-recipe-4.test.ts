import { describe, it } from "vitest";
import { resetSuite } from "../e2e/reset.suite.ts";
import { ALL } from "./lib.ts";

// reset --to every exercise of recipe-4: each reset redoes the lab's Tailscale setup (about 6.5 min in
// all), so `npm run test:drills` (WG3_DRILLS=all) runs it and `npm test` does not.
if (ALL)
  resetSuite({
    recipe: "recipe-4",
    // Site A starts behind a hard NAT, a setting of no stage: every stage (each sets site A's NAT) is not done at the start.
    options: { "nat-a": "hard" },
    staged: "each exercise's solve sets the NAT types of its own stage",
  });
else describe.skip("reset --to every exercise of recipe-4 (npm run test:drills)", () => it("runs with WG3_DRILLS=all", () => {}));
