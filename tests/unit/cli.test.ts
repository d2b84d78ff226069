import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { newClass } from "../../src/classroom/state.ts";
import { parseArgs } from "../../src/cli/args.ts";
import { inputsHash } from "../../src/images/build.ts";
import { makePlan } from "../../src/lab/plan.ts";
import { loadRecipe } from "../../src/recipe/load.ts";
import { startTs } from "../support/start-ts.ts";
import { TIMEOUT } from "../support/timeouts.ts";

function writeClassFile(stateDir: string, json: string): void {
  mkdirSync(join(stateDir, "classroom", "unit"), { recursive: true });
  writeFileSync(join(stateDir, "classroom", "unit", "class.json"), json);
}

function run(args: string[]) {
  // No engine is needed for these: they fail (or answer) before touching one.
  return startTs(args, { env: { DOCKER_HOST: "unix:///nonexistent/wg3.sock" } });
}

describe("start.ts", () => {
  it("--help lists every recipe and command", async () => {
    const r = await startTs(["--help"]);
    expect(r.code, r.stderr).toBe(0);
    for (const w of ["recipe-0", "recipe-3", "setup", "doctor", "stop", "status", "exec", "shell", "check", "solve", "clean"])
      expect(r.stdout).toContain(w);
  });

  it("each command has its own --help", async () => {
    expect((await run(["stop", "--help"])).stdout).toMatch(/Usage: \.\/start\.ts stop <recipe>/);
    expect((await run(["recipe-3", "--help"])).stdout).toMatch(/--control headscale\|builtin/);
  });

  it("output closed early (| head, | grep -q) ends the command quietly with its own exit code", async () => {
    // The reader is gone before the first line is written, as when `head` has exited.
    const run = async (args: string[]) => {
      const r = await startTs(args, { closeStdout: true });
      return { code: r.code, stderr: r.stderr };
    };
    const help = await run(["--help"]);
    expect(help).toEqual({ code: 0, stderr: "" });
    // Negative control: the same spawn with an error keeps its exit code and its sentence.
    const bad = await run(["recipe-9"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^Unknown command or recipe "recipe-9"/);
  });

  it("an unknown recipe or command gets one sentence naming the recipes, and exit 2", async () => {
    const r = await run(["recipe-9"]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(
      /Unknown command or recipe "recipe-9"; recipes: recipe-0, recipe-1, recipe-2, recipe-3, recipe-4, recipe-5, going-live/,
    );
  });

  it(
    "classroom: a group of commands, each with --help; bad input is one sentence and exit 2, before any engine",
    async () => {
      const help = await run(["classroom", "--help"]);
      expect(help.code).toBe(0);
      for (const c of ["classroom up", "classroom status", "classroom add", "classroom remove", "classroom reset", "classroom down"])
        expect(help.stdout).toContain(c);
      expect((await run(["classroom", "up", "--help"])).stdout).toMatch(/Usage: \.\/start\.ts classroom up --seats N --recipe RECIPE/);
      const cases: [string[], RegExp][] = [
        [["classroom"], /^`classroom` needs a command: one of up, status, add, remove, reset, down/],
        [["classroom", "nope"], /^Unknown classroom command "nope": one of up, status, add, remove, reset, down/],
        [["classroom", "up", "--seats", "2"], /^classroom up needs --recipe: one of recipe-0/],
        [["classroom", "up", "--seats", "0", "--recipe", "recipe-3"], /^--seats needs a number of seats from 1 to 99, not "0"/],
        [["classroom", "up", "--seats", "2", "--recipe", "recipe-3", "--class", "Bad_Name"], /^Class name "Bad_Name" is not valid/],
        [["classroom", "up", "--seats", "2", "--recipe", "recipe-3", "--port", "99999"], /^--port needs a whole number from 1 to 65535/],
        [["classroom", "up", "--bogus"], /^Unknown option --bogus for `classroom up`/],
        // A class of seats 01 and 02 on disk (below): add, remove and reset check their seat first.
        [["classroom", "remove", "--class", "unit"], /^`classroom remove` needs the seat's number: \.\/start\.ts classroom remove 03\.\n$/],
        [["classroom", "reset", "x1", "--class", "unit"], /^"x1" is not a seat number: seats are 1 to 99/],
        [["classroom", "reset", "100", "--class", "unit"], /^"100" is not a seat number/],
        [["classroom", "remove", "0", "--class", "unit"], /^"0" is not a seat number/],
        [["classroom", "remove", "05", "--class", "unit"], /^Class unit has no seat 05; its seats: 01, 02\.\n$/],
        [["classroom", "reset", "1", "2", "--class", "unit"], /^`classroom reset` takes one seat, not 2 \(1 2\)\.\n$/],
        [
          ["classroom", "add", "2", "--class", "unit"],
          /^Class unit has a seat 02 already; \.\/start\.ts classroom add --class unit takes the next free number\.\n$/,
        ],
      ];
      const stateDir = mkdtempSync(join(tmpdir(), "wg3-cli-classroom-"));
      const before = JSON.stringify(newClass("unit", "recipe-3", {}, 2));
      writeClassFile(stateDir, before);
      // Side by side: each is a process start, slow on a machine busy with e2e labs.
      const results = await Promise.all(
        cases.map(([args]) => startTs(args, { env: { DOCKER_HOST: "unix:///nonexistent/wg3.sock", WG3_STATE_DIR: stateDir } })),
      );
      // Refused before anything changed: the class is as it was.
      expect(readFileSync(join(stateDir, "classroom", "unit", "class.json"), "utf8")).toBe(before);
      rmSync(stateDir, { recursive: true, force: true });
      cases.forEach(([args, sentence], i) => {
        const r = results[i]!;
        expect([args.join(" "), r.code], r.stderr).toEqual([args.join(" "), 2]);
        expect(r.stderr.trim().split("\n"), args.join(" ")).toHaveLength(1);
        expect(r.stderr).toMatch(sentence);
      });
    },
    TIMEOUT.cli,
  );

  it(
    "reset: an unknown recipe, a lab that is not running, an unknown exercise: one sentence and exit 2, before any engine",
    async () => {
      // A saved plan is what `reset` knows a lab by before asking the engine: one in a state dir of this test's own.
      const state = mkdtempSync(join(tmpdir(), "wg3-reset-"));
      try {
        const plan = makePlan(loadRecipe("going-live"), "t-reset", { layout: "headscale", control: "headscale" }, "0000");
        mkdirSync(join(state, "labs", "t-reset", "going-live"), { recursive: true });
        writeFileSync(join(state, "labs", "t-reset", "going-live", "plan.json"), JSON.stringify(plan));
        const cases: [string[], RegExp][] = [
          [["reset"], /^`reset` needs a recipe: one of recipe-0, /],
          [["reset", "recipe-9"], /^Unknown recipe "recipe-9"; the recipes are: recipe-0, .*going-live\.$/],
          [
            ["reset", "recipe-1", "--lab", "t-reset"],
            /^recipe-1 is not running in lab "t-reset", so there is nothing to reset; start it with/,
          ],
          [
            ["reset", "going-live", "--to", "nope", "--lab", "t-reset"],
            /^going-live has no exercise "nope"; its exercises are: a-record, firewall, certificate, join, stun, server-url, rate-limit\.$/,
          ],
          // An exercise of the other layout is named as such.
          [
            ["reset", "going-live", "--to", "caddy", "--lab", "t-reset"],
            /^going-live \(started with --layout headscale\) has no exercise "caddy"; its exercises are: a-record, firewall, certificate, join, stun, server-url, rate-limit\.$/,
          ],
          [["reset", "going-live", "--to"], /^--to needs a value/],
        ];
        const results = await Promise.all(
          cases.map(([args]) => startTs(args, { env: { DOCKER_HOST: "unix:///nonexistent/wg3.sock", WG3_STATE_DIR: state } })),
        );
        cases.forEach(([args, sentence], i) => {
          const r = results[i]!;
          expect([args.join(" "), r.code], r.stderr).toEqual([args.join(" "), 2]);
          expect(r.stderr.trim().split("\n"), args.join(" ")).toHaveLength(1);
          expect(r.stderr.trim()).toMatch(sentence);
        });
        // Negative control: a valid exercise gets past the input checks, to the engine (dead here).
        const valid = await startTs(["reset", "going-live", "--to", "join", "--lab", "t-reset"], {
          env: { DOCKER_HOST: "unix:///nonexistent/wg3.sock", WG3_STATE_DIR: state },
        });
        expect(valid.code, valid.stderr).toBe(1);
        expect(valid.stderr).toMatch(/DOCKER_HOST=unix:\/\/\/nonexistent\/wg3\.sock/);
      } finally {
        rmSync(state, { recursive: true, force: true });
      }
    },
    TIMEOUT.cli,
  );

  it("an unknown option is refused", async () => {
    const r = await run(["recipe-1", "--bogus"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/Unknown option --bogus/);
  });

  it("a bad lab name is refused before anything is created", async () => {
    const r = await run(["recipe-1", "--lab", "Not_OK"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Lab name "Not_OK" is not valid/);
  });

  it("a dead DOCKER_HOST is named", async () => {
    const r = await run(["status"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/DOCKER_HOST=unix:\/\/\/nonexistent\/wg3\.sock/);
  });
});

describe("argument parsing", () => {
  it("splits positionals, flags and the command after --", () => {
    const p = parseArgs(
      ["recipe-0", "peer-1", "--lab", "x", "--", "wg", "show", "--json"],
      [{ name: "lab", value: "NAME", help: "" }],
      "exec",
    );
    expect(p).toEqual({ positionals: ["recipe-0", "peer-1"], flags: { lab: "x" }, rest: ["wg", "show", "--json"] });
  });
  it("wants a value for valued flags", () => {
    expect(() => parseArgs(["--lab"], [{ name: "lab", value: "NAME", help: "" }], "status")).toThrow(/--lab needs a value/);
  });
});

describe("images", () => {
  it("are keyed by a stable hash of their inputs; children change with their parent", () => {
    expect(inputsHash("wg-peer")).toBe(inputsHash("wg-peer"));
    expect(inputsHash("wg-peer")).not.toBe(inputsHash("webserver"));
    expect(inputsHash("wg-peer")).toMatch(/^[0-9a-f]{16}$/);
  });
});

describe("recipe options as flags", () => {
  it("every recipe's options are flags of its start, listed by --help <recipe>, and none shadows a built-in flag", async () => {
    const { recipeOptionFlags } = await import("../../src/cli/commands/start.ts");
    const { listRecipes, loadRecipe } = await import("../../src/recipe/load.ts");
    for (const r of listRecipes()) {
      const flags = recipeOptionFlags(r);
      expect(flags.map((f) => f.name)).toEqual(Object.keys(loadRecipe(r).options));
      const help = (await run(["--help", r])).stdout;
      for (const f of flags) expect(help).toContain(`--${f.name} ${f.value}`);
    }
  });
});
