/**
 * The shape of the tree, held by tests: one way to the container engine, and imports that run
 * one way (no cycles), so a change stays in its room.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { ROOT } from "../../src/paths.ts";

const CODE_DIRS = ["src", "tests", "bench", "scripts"];

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) return f === "node_modules" ? [] : sourceFiles(p);
    return /\.(ts|mjs)$/.test(f) ? [p] : [];
  });
}

/** Module specifiers a file imports (static and dynamic, `import type` included). */
function importsOf(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+"([^"]+)"|import\(\s*"([^"]+)"\s*\)/g))
    out.push((m[1] ?? m[2])!);
  return out;
}

/** Cycles among relative imports of `files`, each as the list of files around it. */
function importCycles(files: string[], read: (f: string) => string): string[][] {
  const edges = new Map<string, string[]>();
  for (const f of files) {
    const deps = importsOf(read(f))
      .filter((s) => s.startsWith("."))
      .map((s) => resolve(dirname(f), s))
      .filter((d) => files.includes(d));
    edges.set(f, deps);
  }
  const cycles: string[][] = [];
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const visit = (f: string) => {
    state.set(f, "open");
    stack.push(f);
    for (const d of edges.get(f) ?? []) {
      if (state.get(d) === "open") cycles.push(stack.slice(stack.indexOf(d)));
      else if (!state.has(d)) visit(d);
    }
    stack.pop();
    state.set(f, "done");
  };
  for (const f of files) if (!state.has(f)) visit(f);
  return cycles;
}

describe("structure", () => {
  const files = CODE_DIRS.flatMap((d) => sourceFiles(join(ROOT, d)));
  const read = (f: string) => readFileSync(f, "utf8");

  it("only src/engine/ talks to the engine's API client (dockerode)", () => {
    const outside = files.filter((f) => !f.startsWith(join(ROOT, "src", "engine")) && importsOf(read(f)).includes("dockerode"));
    expect(outside.map((f) => relative(ROOT, f))).toEqual([]);
  });

  it("no import cycles", () => {
    expect(importCycles(files, read).map((c) => c.map((f) => relative(ROOT, f)).join(" -> "))).toEqual([]);
  });

  it("the cycle check can fail: a -> b -> a is found", () => {
    const fake: Record<string, string> = { "/x/a.ts": 'import { b } from "./b.ts";', "/x/b.ts": 'import type { a } from "./a.ts";' };
    expect(importCycles(Object.keys(fake), (f) => fake[f]!)).toEqual([["/x/a.ts", "/x/b.ts"]]);
    expect(importsOf('const x = await import("../y.ts");')).toEqual(["../y.ts"]);
  });
});
