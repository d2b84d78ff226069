import { readdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Engine } from "../../src/engine/engine.ts";
import { stateDir } from "../../src/paths.ts";
import { listRecipes } from "../../src/recipe/load.ts";
import { defaultLabBusy } from "../support/labs.ts";
import { startTs } from "../support/start-ts.ts";
import { engine, type Leftovers, NOTHING, ours } from "./lib.ts";

/**
 * Every bad input named in the issues (platform, recipes, recipe 3, workspace, builtin
 * control, benchmarks): through the real CLI, each gets its one-sentence error, a non-zero
 * exit, and nothing is created (no container, network, volume, tmux session or lab state).
 */
interface Row {
  args: string[];
  error: RegExp;
  exit?: number;
  env?: Record<string, string>;
}

// Every recipe in recipes/, as the CLI names them in its sentences.
const RECIPES = listRecipes().join(", ");

const WITHOUT_A_LAB: Row[] = [
  { args: ["recipe-9"], exit: 2, error: new RegExp(`^Unknown command or recipe "recipe-9"; recipes: ${RECIPES}; commands: .*\\.$`) },
  { args: ["frobnicate"], exit: 2, error: /^Unknown command or recipe "frobnicate"; recipes: / },
  { args: ["check", "recipe-9"], error: new RegExp(`^Unknown recipe "recipe-9"; the recipes are: ${RECIPES}\\.$`) },
  { args: ["exec", "recipe-9", "x", "--", "true"], error: /^Unknown recipe "recipe-9"/ },
  { args: ["graph", "recipe-9"], error: /^Unknown recipe "recipe-9"/ },
  { args: ["stop"], exit: 2, error: new RegExp(`^\`stop\` needs a recipe: one of ${RECIPES}\\.$`) },
  {
    args: ["recipe-1", "--lab", "Not_OK", "--no-attach"],
    error: /^Lab name "Not_OK" is not valid: use up to 20 lowercase letters, digits and dashes\.$/,
  },
  { args: ["recipe-1", "--lab", "x".repeat(21), "--no-attach"], error: /^Lab name "x{21}" is not valid/ },
  { args: ["stop", "recipe-1", "--lab", "BAD"], error: /^Lab name "BAD" is not valid/ },
  { args: ["recipe-1", "--lab"], exit: 2, error: /^--lab needs a value \(NAME\)\.$/ },
  { args: ["recipe-1", "--bogus"], exit: 2, error: /^Unknown option --bogus for `start`; see \.\/start\.ts --help\.$/ },
  {
    args: ["recipe-3", "--control", "nope", "--no-attach"],
    error: /^--control must be one of [a-z, ]*headscale[a-z, ]* for recipe-3, not "nope"\.$/,
  },
  { args: ["recipe-1", "--control", "builtin", "--no-attach"], error: /^recipe-1 has no --control option\.$/ },
  {
    args: ["recipe-4", "--coordinator", "blackholed", "--lab", "zz", "--no-attach"],
    error:
      /^--coordinator blackholed can only be set on a running lab \(\.\/start\.ts set recipe-4 coordinator=blackholed\), since the lab's setup needs it otherwise; nothing was created\.$/,
  },
  { args: ["exec", "recipe-1", "home", "--", "true"], error: /^recipe-1 is not running; start it with \.\/start\.ts recipe-1\.$/ },
  {
    args: ["exec", "recipe-1", "home", "--lab", "zz", "--", "true"],
    error: /^recipe-1 is not running in lab "zz"; start it with \.\/start\.ts recipe-1 --lab zz\.$/,
  },
  { args: ["exec", "recipe-1", "home"], exit: 2, error: /^exec needs a command after --/ },
  { args: ["check", "recipe-1"], error: /^recipe-1 is not running; start it with/ },
  { args: ["solve", "recipe-1"], error: /^recipe-1 is not running; start it with/ },
  { args: ["shell", "recipe-1", "home"], error: /^recipe-1 is not running; start it with/ },
  { args: ["matrix"], exit: 2, error: new RegExp(`^\`matrix\` needs a recipe: one of ${RECIPES}\\.$`) },
  { args: ["matrix", "recipe-3"], error: /^recipe-3 declares no reachability to probe \(recipe-5 does\)\.$/ },
  {
    args: ["matrix", "recipe-5", "--lab", "zz"],
    error: /^recipe-5 is not running in lab "zz"; start it with \.\/start\.ts recipe-5 --lab zz\.$/,
  },
  { args: ["status"], env: { DOCKER_HOST: "unix:///nonexistent/wg3.sock" }, error: /DOCKER_HOST=unix:\/\/\/nonexistent\/wg3\.sock/ },
];

/** These need recipe-1 running in the default lab (it holds 192.168.99.0/24, as recipe-2 and -3 need). */
const WITH_RECIPE_1: Row[] = [
  {
    args: ["exec", "recipe-1", "nosuch", "--", "true"],
    error: /^recipe-1 has no node "nosuch"; its nodes are: lighthouse, home, roaming, home-router\.$/,
  },
  { args: ["shell", "recipe-1", "nosuch"], error: /^recipe-1 has no node "nosuch"; its nodes are: / },
  { args: ["solve", "recipe-1", "nosuch"], exit: 2, error: /^recipe-1 has no exercise "nosuch"; its exercises are: / },
  {
    args: ["recipe-3", "--no-attach"],
    error:
      /^Subnet 192\.168\.99\.0\/24 \(network "home" of recipe-3\) is already used by lab "default" \(recipe-1\); stop that first, or start this one with --lab NAME\.$/,
  },
  { args: ["recipe-2", "--no-attach"], error: /^Subnet 192\.168\.99\.0\/24 .* is already used by lab "default" \(recipe-1\)/ },
];

function labDirs(): string[] {
  const root = join(stateDir(), "labs");
  try {
    return readdirSync(root).flatMap((lab) => readdirSync(join(root, lab)).map((r) => `${lab}/${r}`));
  } catch {
    return [];
  }
}

async function expectRefused(e: Engine, row: Row): Promise<void> {
  const before: [Leftovers, string[]] = [await ours(e), labDirs()];
  const r = await startTs(row.args, { env: row.env });
  const what = `./start.ts ${row.args.join(" ")}`;
  const lines = r.stderr.trim().split("\n");
  expect(r.code, `${what}: ${r.stderr}`).not.toBe(0);
  if (row.exit !== undefined) expect(r.code, what).toBe(row.exit);
  expect(lines, `${what} says one sentence`).toHaveLength(1);
  expect(lines[0], what).toMatch(row.error);
  expect([await ours(e), labDirs()], `${what} created nothing`).toEqual(before);
}

// These rows speak of the default recipe-1 lab (and of the subnets it shares with recipe-2 and
// recipe-3), so they need those free; they skip, untouched, when someone else runs one.
const busy = await defaultLabBusy(await engine(), ["recipe-1", "recipe-2", "recipe-3"]);

describe.skipIf(busy)(`bad input: one sentence, non-zero exit, nothing created${busy ? ` (${busy})` : ""}`, () => {
  let e: Engine;
  beforeAll(async () => {
    e = await engine();
  });

  describe("with no lab running", () => {
    beforeAll(async () => {
      expect(await ours(e, { recipe: "recipe-1" }), "recipe-1 must not be running").toEqual(NOTHING);
    });
    it.each(WITHOUT_A_LAB.map((r) => [r.args.join(" "), r] as const))("./start.ts %s", async (_, row) => {
      await expectRefused(e, row);
    });
  });

  describe("with recipe-1 running", () => {
    beforeAll(async () => {
      const up = await startTs(["recipe-1", "--no-attach"]);
      expect(up.code, up.stderr).toBe(0);
    });
    afterAll(async () => {
      await startTs(["stop", "recipe-1"]);
    });
    it.each(WITH_RECIPE_1.map((r) => [r.args.join(" "), r] as const))("./start.ts %s", async (_, row) => {
      await expectRefused(e, row);
    });
    it("the probe works: exec on a real node of the running lab succeeds", async () => {
      const r = await startTs(["exec", "recipe-1", "home", "--", "true"]);
      expect(r.code, r.stderr).toBe(0);
    });
  });
});
