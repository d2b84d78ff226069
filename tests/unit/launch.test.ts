import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
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
    const built = statSync(bundle()).mtimeMs;
    run();
    expect(statSync(bundle()).mtimeMs).toBe(built);
  });

  it("rebuilds after a source file changes", () => {
    const before = statSync(bundle()).mtimeMs;
    const later = new Date(before + 5_000);
    utimesSync(join(checkout, "src", "cli", "main.ts"), later, later);
    run();
    expect(statSync(bundle()).mtimeMs).toBeGreaterThan(before);
  });

  it("runs the sources through tsx when the bundle cannot be written", () => {
    rmSync(join(checkout, ".cache"), { recursive: true, force: true });
    writeFileSync(join(checkout, ".cache"), "a file where the folder would go\n");
    expect(run()).toContain("Usage");
  });
});
