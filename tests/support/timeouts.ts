/**
 * Every time limit the tests and benchmarks wait for, by what is waited on. A test names one
 * of these instead of writing milliseconds; when a machine is slower, the limit changes here.
 * vitest.config.ts takes the per-test and per-hook limits of each project from here too.
 */
export const TIMEOUT = {
  /** A condition that holds within moments once true: a listener up, a capture written. eventually()'s default. */
  poll: 30_000,
  /** A condition that must turn within a few seconds (a fault taking effect, a server process answering). */
  short: 10_000,
  /** A mesh converging or going away: nodes on- or offline in the control server, a route installed, a handshake. */
  converge: 60_000,
  /** One command run in a container. */
  exec: 30_000,
  /** A command in a container that sets something up (wg-quick up), or a one-shot container to run to its end. */
  slowExec: 60_000,
  /**
   * An ACME certificate to be issued or refused: the CA gives up on an unreachable challenge
   * after 15 s, per challenge type, and Headscale (Go's autocert) retries a name only a minute
   * after a failed try.
   */
  acme: 150_000,
  /** Recovery after a fault (restart drills). */
  recovery: 120_000,
  /**
   * An ephemeral node that went offline to be deleted: recipe-5's node.ephemeral.inactivity_timeout
   * is 70 s (Headscale refuses 65 s or less), plus the builtin server's 10 s offline grace and a
   * margin for a busy machine.
   */
  ephemeral: 120_000,
  /** A `timeout 10 tcpdump` capture to have finished and exited. */
  capture: 20_000,
  /** One ./start.ts command whose images are built (a lab start, stop, check), or a test's own lab setup in a hook. */
  cli: 300_000,
  /** A test's teardown in a hook: removing what it created. */
  teardown: 120_000,
  /** A cold image build or `go install` to reach a given step. */
  build: 600_000,
} as const;

/** vitest's limits per project (vitest.config.ts). */
export const VITEST = {
  unit: { testTimeout: 30_000 },
  integration: { testTimeout: 120_000, hookTimeout: 60_000 },
  /** A hook may build missing images (first run: minutes). */
  e2e: { testTimeout: 300_000, hookTimeout: 900_000 },
  cold: { testTimeout: 1_800_000 },
  drills: { testTimeout: 900_000, hookTimeout: 900_000 },
} as const;
