import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import * as z from "zod";
import { ROOT } from "../../src/paths.ts";
import { generatedTables, readmeDrift, updateReadme } from "../../src/recipe/docs.ts";
import { documented, nodeSchema } from "../../src/recipe/schema.ts";
import { field, str } from "../../src/recipe/shapes.ts";

/** recipes/README.md's tables of keys are the schema's (npm run docs writes them). */

const readme = readFileSync(join(ROOT, "recipes", "README.md"), "utf8");

describe("recipes/README.md and the recipe schema", () => {
  it("agree: every generated table is in the README as the schema writes it", () => {
    expect(readmeDrift(readme), "run npm run docs").toEqual([]);
    expect(updateReadme(readme)).toBe(readme);
  });

  it("a README edited by hand no longer agrees (negative control)", () => {
    const noOverlayRow = readme.replace(/^\| `overlay` \|.*\n/m, "");
    expect(noOverlayRow).not.toBe(readme);
    expect(readmeDrift(noOverlayRow)).toEqual(["recipe"]);
    const reworded = readme.replace("| `caps` | no |", "| `caps` | yes |");
    expect(readmeDrift(reworded)).toEqual(["node"]);
    expect(updateReadme(reworded)).toBe(readme);
  });

  it("a schema changed without regenerating no longer agrees (negative control)", () => {
    const withColour = nodeSchema.extend({ colour: field(str().optional(), "The node's colour in the graph.") });
    const tables = generatedTables({ ...documented, node: withColour });
    expect(readmeDrift(readme, tables)).toEqual(["node"]);
    expect(updateReadme(readme, tables)).toContain("| `colour` | no | string | The node's colour in the graph. |");
  });

  it("every field has its doc text, and every table its place", () => {
    expect(() => generatedTables({ ...documented, node: nodeSchema.extend({ colour: z.string() }) })).toThrow(
      /field node\.colour has no doc text/,
    );
    expect(() => updateReadme(readme.replace(/<!-- recipe-docs:roles[^>]*-->\n[\s\S]*?<!-- \/recipe-docs:roles -->\n/, ""))).toThrow(
      /no markers for the table\(s\) roles/,
    );
    expect(Object.keys(generatedTables())).toEqual([...Object.keys(documented), "roles"]);
  });
});
