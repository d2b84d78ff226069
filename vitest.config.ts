import { defineConfig } from "vitest/config";
import { VITEST } from "./tests/support/timeouts.ts";

// Two projects: `unit` never touches a container engine and runs in seconds;
// `e2e` drives a real engine, real WireGuard, real tailscaled and Headscale.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ["tests/unit/**/*.test.ts"],
          ...VITEST.unit,
        },
      },
      {
        test: {
          // Real tailscaled processes on this host against the builtin control server; no engine.
          name: "integration",
          include: ["tests/integration/**/*.test.ts"],
          ...VITEST.integration,
        },
      },
      {
        test: {
          name: "e2e",
          include: ["tests/e2e/**/*.test.ts"],
          // Labs share one engine and fixed workshop subnets: run files one at a time.
          fileParallelism: false,
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
          sequence: { groupOrder: 1 },
          ...VITEST.drills,
          globalSetup: ["tests/e2e/global-setup.ts"],
        },
      },
    ],
  },
});
