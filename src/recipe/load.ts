import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { UserError } from "../errors.ts";
import { ROOT, recipesDir } from "../paths.ts";
import { crossCheck } from "./crossref.ts";
import { recipeSchema } from "./schema.ts";
import { NAME } from "./shapes.ts";
import type { Recipe, RecipeDoc } from "./types.ts";
import { describeIssues, lineAt, type Parsed, parseYaml, SchemaError } from "./yaml.ts";

// Callers have always imported the address helpers from here.
export { cidrsOverlap, intToIp, ipInCidr, ipToInt } from "./net.ts";

export function listRecipes(): string[] {
  if (!existsSync(recipesDir)) return [];
  return readdirSync(recipesDir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(join(recipesDir, d.name, "recipe.yaml")))
    .map((d) => d.name)
    .sort(byWorkshopOrder);
}

/** recipe-0 .. recipe-N by number (recipe-10 after recipe-9), then the other labs by name. */
function byWorkshopOrder(a: string, b: string): number {
  const n = (s: string) => /^recipe-(\d+)$/.exec(s)?.[1] ?? null;
  const [na, nb] = [n(a), n(b)];
  if (na !== null && nb !== null) return Number(na) - Number(nb);
  if (na !== null || nb !== null) return na !== null ? -1 : 1;
  return a.localeCompare(b);
}

/** The first problem is the message, the rest follow one per line; exit status 2. */
function invalid(name: string, problems: string[]): UserError {
  return new UserError(`Recipe ${name} is not valid: ${problems[0]}`, 2, problems.slice(1).join("\n") || undefined);
}

/** Parse and check the shape; reports every shape problem at once, in document order. */
function parseRecipe(name: string, text: string, shown: string): { parsed: Parsed; doc: RecipeDoc } {
  try {
    const parsed = parseYaml(text, shown);
    const result = recipeSchema.safeParse(parsed.value, { reportInput: true });
    if (!result.success) throw new SchemaError(describeIssues(result.error.issues, parsed, shown));
    return { parsed, doc: result.data };
  } catch (e) {
    if (e instanceof SchemaError) throw invalid(name, e.problems);
    throw e;
  }
}

/** Load, validate and cross-check recipes/<name>/recipe.yaml. Never touches the engine. */
export function loadRecipe(name: string, dir = recipesDir): Recipe {
  const rdir = join(dir, name);
  const file = join(rdir, "recipe.yaml");
  if (!NAME.test(name) || !existsSync(file)) {
    const known = listRecipes();
    throw new UserError(`Unknown recipe "${name}"; the recipes are: ${known.join(", ") || "(none found in recipes/)"}.`);
  }
  const shown = relative(process.cwd(), file).startsWith("..") ? relative(ROOT, file) : relative(process.cwd(), file);
  const text = readFileSync(file, "utf8");
  const key = cacheKey(rdir, text);
  const cached = key ? readCached(name, key) : undefined;
  if (cached) return { ...cached, dir: rdir, file: shown };
  const { parsed, doc } = parseRecipe(name, text, shown);
  const recipe: Recipe = { ...doc, dir: rdir, file: shown };
  const problems: string[] = [];
  crossCheck(recipe, name, (path, msg) => problems.push(`${shown}:${lineAt(parsed, path)}: ${path.join(".")}: ${msg}`));
  if (problems.length) throw invalid(name, problems);
  if (key) writeCached(name, key, doc);
  return recipe;
}

// Parsing YAML with line numbers and validating it is most of a command's start-up (help and
// every recipe's flags read all recipes: ~350 ms), so the bundled CLI (scripts/launch.mjs) keeps
// each validated recipe, keyed by its own build and the recipe folder's contents. Under tsx or
// vitest there is no build id, hence no cache: a schema being edited is always applied.
const cacheFolder = join(ROOT, ".cache", "recipes");

function cacheKey(rdir: string, text: string): string | undefined {
  const build = (globalThis as { wg3BuildId?: string }).wg3BuildId;
  if (!build) return undefined;
  const hash = createHash("sha256").update(build).update("\0").update(text);
  for (const f of filesUnder(rdir)) hash.update(`\0${f}:${statSync(f).mtimeMs}`);
  return hash.digest("hex");
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? filesUnder(join(dir, e.name)) : [join(dir, e.name)]));
}

function readCached(name: string, key: string): RecipeDoc | undefined {
  try {
    const entry = JSON.parse(readFileSync(join(cacheFolder, `${name}.json`), "utf8")) as { key: string; doc: RecipeDoc };
    return entry.key === key ? entry.doc : undefined;
  } catch {
    return undefined;
  }
}

function writeCached(name: string, key: string, doc: RecipeDoc): void {
  try {
    mkdirSync(cacheFolder, { recursive: true });
    const tmp = join(cacheFolder, `${name}.json.${process.pid}.tmp`);
    writeFileSync(tmp, JSON.stringify({ key, doc }));
    renameSync(tmp, join(cacheFolder, `${name}.json`));
  } catch {
    // A read-only checkout: no cache, the same result.
  }
}
