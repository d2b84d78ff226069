#!/usr/bin/env -S npx tsx
/**
 * Rewrites the tables of recipes/README.md from the recipe schema (src/recipe/schema.ts).
 * `--check`: change nothing, exit 1 naming the tables that are out of date.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "../src/paths.ts";
import { readmeDrift, updateReadme } from "../src/recipe/docs.ts";

const file = join(ROOT, "recipes", "README.md");
const text = readFileSync(file, "utf8");
if (process.argv.includes("--check")) {
  const drift = readmeDrift(text);
  if (drift.length) {
    console.error(`recipes/README.md is out of date for: ${drift.join(", ")}; run npm run docs.`);
    process.exit(1);
  }
} else {
  const next = updateReadme(text);
  if (next !== text) writeFileSync(file, next);
  console.log(next === text ? "recipes/README.md is up to date." : "recipes/README.md: tables rewritten from src/recipe/schema.ts.");
}
