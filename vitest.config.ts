import { defineConfig } from "vitest/config";
import LongestFirst from "./tests/support/sequencer.ts";
import { VITEST } from "./tests/support/timeouts.ts";

/** e2e files that use the default lab (the workshop's names), so never two at once. */
const E2E_DEFAULT_LAB = ["tests/e2e/labs.test.ts", "tests/e2e/user-lab.test.ts", "tests/e2e/workspace.test.ts"];
/** e2e files in flight at once (WG3_E2E_PARALLEL=1: one at a time, as before). */
const E2E_PARALLEL = Number(process.env.WG3_E2E_PARALLEL ?? 3);

// Two projects: `unit` never touches a container engine and runs in seconds;
// `e2e` drives a real engine, real WireGuard, real tailscaled and Headscale.
export default defineConfig({
  test: {
    // The slowest files first (by a full run's seconds), so that no long file starts last.
    sequence: { sequencer: LongestFirst },
    projects: [
      {
        test: {
          name: "unit",
          include: ["tests/unit/**/*.test.ts"],
          // vitest wants one worker count per group of projects run together (group 0 here).
          maxWorkers: E2E_PARALLEL,
          ...VITEST.unit,
        },
      },
      {
        test: {
          // Real tailscaled processes on this host against the builtin control server; no engine.
          name: "integration",
          include: ["tests/integration/**/*.test.ts"],
          maxWorkers: E2E_PARALLEL,
          ...VITEST.integration,
        },
      },
      {
        test: {
          // Every lab here has its own name and random free subnets (tests/support/labs.ts), so
          // files run side by side: most of their time is waiting for tailscaled, not CPU.
          name: "e2e",
          include: ["tests/e2e/**/*.test.ts"],
          exclude: E2E_DEFAULT_LAB,
          maxWorkers: E2E_PARALLEL,
          ...VITEST.e2e,
          globalSetup: ["tests/e2e/global-setup.ts"],
        },
      },
      {
        test: {
          // The files that start labs under the workshop's own names and subnets: one at a
          // time, after the others.
          name: "e2e-default-lab",
          include: E2E_DEFAULT_LAB,
          fileParallelism: false,
          sequence: { groupOrder: 1 },
          ...VITEST.e2e,
          globalSetup: ["tests/e2e/global-setup.ts"],
        },
      },
      {
        test: {
          // The first run on a fresh machine (empty caches): slow, so only with WG3_COLD=1
          // (`npm run test:cold`, which CI runs as a phase of its own).
          name: "cold",
          include: ["tests/cold/**/*.test.ts"],
          maxWorkers: E2E_PARALLEL,
          ...VITEST.cold,
        },
      },
      {
        test: {
          // Reliability drills (tests/drills/lib.ts): `npm test` runs the short ones; the long
          // ones need WG3_DRILLS=all (`npm run test:drills`). They run after the other projects,
          // one file at a time, since they share the engine and the workshop subnets with e2e.
          name: "drills",
          include: ["tests/drills/**/*.test.ts"],
          fileParallelism: false,
          sequence: { groupOrder: 2 },
          ...VITEST.drills,
          globalSetup: ["tests/e2e/global-setup.ts"],
        },
      },
    ],
  },
});
