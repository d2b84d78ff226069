import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { asTyped, startCommandFrom } from "../../src/cli/as-typed.ts";
import { ROOT } from "../../src/paths.ts";

describe("./start.ts as the person types it from their folder", () => {
  const hint = "recipe-1 is not running; start it with ./start.ts recipe-1 (or `./start.ts --help`).";

  it("in the checkout: unchanged (negative control)", () => {
    expect(startCommandFrom(ROOT)).toBe("./start.ts");
    expect(asTyped(hint, ROOT)).toBe(hint);
  });

  it("in the workspace's host pane (recipes/<recipe>): ../../start.ts, every mention", () => {
    expect(asTyped(hint, join(ROOT, "recipes", "recipe-1"))).toBe(
      "recipe-1 is not running; start it with ../../start.ts recipe-1 (or `../../start.ts --help`).",
    );
  });

  it("outside the checkout: its absolute path; a path that only ends in start.ts is left alone", () => {
    expect(startCommandFrom("/")).toBe(join(ROOT, "start.ts"));
    expect(asTyped("see scripts/start.ts and x./start.ts", "/")).toBe("see scripts/start.ts and x./start.ts");
  });
});
