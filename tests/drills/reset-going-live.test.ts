import { describe, it } from "vitest";
import { resetSuite } from "../e2e/reset.suite.ts";
import { ALL } from "./lib.ts";

// reset --to every exercise of going-live: each reset redoes the lab's Tailscale setup (several minutes in
// all), so `npm run test:drills` (WG3_DRILLS=all) runs it and `npm test` does not.
if (ALL) resetSuite({ recipe: "going-live" });
else describe.skip("reset --to every exercise of going-live (npm run test:drills)", () => it("runs with WG3_DRILLS=all", () => {}));
