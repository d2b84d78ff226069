import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT } from "../../src/paths.ts";

// scripts/launch.mjs runs ./start.ts from a bundle of src/: it must rebuild when src/ changes,
// and fall back to tsx when it cannot write one, so a stale bundle never runs.
describe("the CLI launcher", () => {
  let checkout: string;
  const bundle = () => join(checkout, ".cache", "cli.mjs");
  const run = () => execFileSync(process.execPath, [join(checkout, "scripts", "launch.mjs"), "--help"], { encoding: "utf8" });

  beforeAll(() => {
    checkout = mkdtempSync(join(tmpdir(), "wg3-launch-"));
    for (const part of ["src", "scripts", "recipes", "package.json", "package-lock.json", "versions.json"]) {
      cpSync(join(ROOT, part), join(checkout, part), { recursive: true });
    }
    symlinkSync(join(ROOT, "node_modules"), join(checkout, "node_modules"));
  });
  afterAll(() => rmSync(checkout, { recursive: true, force: true }));

  it("builds the bundle on the first run and reuses it while src/ is unchanged", () => {
    expect(run()).toContain("Usage");
    const built = statSync(bundle()).ino;
    run();
    expect(statSync(bundle()).ino).toBe(built);
  });

  it("rebuilds after a source file changes", () => {
    const before = statSync(bundle()).mtimeMs;
    const later = new Date(before + 5_000);
    utimesSync(join(checkout, "src", "cli", "main.ts"), later, later);
    run();
    expect(statSync(bundle()).mtimeMs).toBeGreaterThan(before);
  });

  it("reuses the bundle after a rebuild for a source whose mtime has a sub-millisecond part", () => {
    const odd = Math.floor(statSync(bundle()).mtimeMs / 1000) + 7.0004567; // seconds, as utimes takes them
    utimesSync(join(checkout, "src", "cli", "main.ts"), odd, odd);
    run();
    const rebuilt = statSync(bundle()).ino; // a rebuild renames a new file into place
    run();
    expect(statSync(bundle()).ino).toBe(rebuilt);
  });

  it("reads a recipe anew once its file changes (the bundle keeps validated recipes)", () => {
    const file = join(checkout, "recipes", "recipe-0", "recipe.yaml");
    expect(run()).not.toContain("A renamed mesh");
    writeFileSync(file, readFileSync(file, "utf8").replace(/^title: .*$/m, "title: A renamed mesh"));
    expect(run()).toContain("A renamed mesh");
  });

  it("runs the sources through tsx when the bundle cannot be written", () => {
    rmSync(join(checkout, ".cache"), { recursive: true, force: true });
    writeFileSync(join(checkout, ".cache"), "a file where the folder would go\n");
    expect(run()).toContain("Usage");
  });
});
