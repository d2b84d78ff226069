import { execFileSync, spawn, spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseArgs } from "../../src/cli/args.ts";
import { inputsHash } from "../../src/images/build.ts";
import { ROOT } from "../../src/paths.ts";

const startTs = join(ROOT, "start.ts");

function run(args: string[]) {
  // No engine is needed for these: they fail (or answer) before touching one.
  return spawnSync(startTs, args, { encoding: "utf8", env: { ...process.env, DOCKER_HOST: "unix:///nonexistent/wg3.sock" } });
}

describe("start.ts", () => {
  it("--help lists every recipe and command", () => {
    const out = execFileSync(startTs, ["--help"], { encoding: "utf8" });
    for (const w of ["recipe-0", "recipe-3", "setup", "doctor", "stop", "status", "exec", "shell", "check", "solve", "clean"])
      expect(out).toContain(w);
  });

  it("each command has its own --help", () => {
    expect(run(["stop", "--help"]).stdout).toMatch(/Usage: \.\/start\.ts stop <recipe>/);
    expect(run(["recipe-3", "--help"]).stdout).toMatch(/--control headscale\|builtin/);
  });

  it("output closed early (| head, | grep -q) ends the command quietly with its own exit code", async () => {
    const run = (args: string[]) =>
      new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const child = spawn(startTs, args, { stdio: ["ignore", "pipe", "pipe"] });
        // The reader is gone before the first line is written, as when `head` has exited.
        child.stdout.destroy();
        let stderr = "";
        child.stderr.on("data", (b: Buffer) => {
          stderr += b.toString();
        });
        child.on("close", (code) => resolve({ code, stderr }));
      });
    const help = await run(["--help"]);
    expect(help).toEqual({ code: 0, stderr: "" });
    // Negative control: the same spawn with an error keeps its exit code and its sentence.
    const bad = await run(["recipe-9"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^Unknown command or recipe "recipe-9"/);
  });

  it("an unknown recipe or command gets one sentence naming the recipes, and exit 2", () => {
    const r = run(["recipe-9"]);
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/Unknown command or recipe "recipe-9"; recipes: recipe-0, recipe-1, recipe-2, recipe-3/);
  });

  it("an unknown option is refused", () => {
    const r = run(["recipe-1", "--bogus"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/Unknown option --bogus/);
  });

  it("a bad lab name is refused before anything is created", () => {
    const r = run(["recipe-1", "--lab", "Not_OK"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/Lab name "Not_OK" is not valid/);
  });

  it("a dead DOCKER_HOST is named", () => {
    const r = run(["status"]);
    expect(r.status).toBe(1);
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
