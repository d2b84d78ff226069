import { describe, it } from "vitest";
import { resetSuite } from "../e2e/reset.suite.ts";
import { ALL } from "./lib.ts";

// reset --to every exercise of recipe-5: each reset redoes the lab's Tailscale setup (about 8.5 min in
// all), so `npm run test:drills` (WG3_DRILLS=all) runs it and `npm test` does not.
if (ALL) resetSuite({ recipe: "recipe-5" });
else describe.skip("reset --to every exercise of recipe-5 (npm run test:drills)", () => it("runs with WG3_DRILLS=all", () => {}));
