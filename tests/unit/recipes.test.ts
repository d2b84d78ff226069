import { describe, expect, it } from "vitest";
import { makePlan, prefixFor, refuseLiveOnlyAtStart, resolveOptions, scopeOf } from "../../src/lab/plan.ts";
import { cidrsOverlap, ipInCidr, listRecipes, loadRecipe } from "../../src/recipe/load.ts";
import { placeholders, render } from "../../src/recipe/template.ts";
import { loadError, MINIMAL_RECIPE, recipeDir } from "../support/recipes.ts";

const minimal = MINIMAL_RECIPE;

describe("the shipped recipes", () => {
  it("are all valid, and every template placeholder they use resolves", () => {
    expect(listRecipes()).toEqual(["recipe-0", "recipe-1", "recipe-2", "recipe-3", "recipe-4", "recipe-5", "going-live"]);
    for (const name of listRecipes()) {
      const r = loadRecipe(name);
      const options = resolveOptions(r, {});
      const plan = makePlan(
        r,
        "default",
        options,
        "run",
        {},
        Object.fromEntries((r.wireguard?.keys ?? []).map((k) => [k, { privateKey: "p", publicKey: "P" }])),
      );
      plan.tls = { caCert: "ca", cert: "c", key: "k" };
      const scope = scopeOf(plan, { homeKey: "x", roamingKey: "y", aKey: "x", bKey: "y" });
      for (const n of Object.values(plan.nodes)) for (const f of n.files) if (f.content) render(f.content, scope);
      expect(r.exercises.length).toBeGreaterThan(0);
    }
  });

  it("keep the workshop's container names and addresses in the default lab", () => {
    const r2 = makePlan(loadRecipe("recipe-2"), "default", {}, "run");
    expect(r2.nodes.lighthouse!.container).toBe("wg-recipe-2_lighthouse");
    expect(r2.nodes.webserver!.ip.home).toBe("192.168.99.10");
    const r3 = makePlan(loadRecipe("recipe-3"), "default", { control: "headscale" }, "run");
    expect(r3.nodes.headscale!.container).toBe("recipe-3_headscale");
    expect(r3.nodes.headscale!.ip.roaming).toBe("10.1.99.11");
  });
});

describe("recipe validation names file, line and expectation", () => {
  it("accepts a minimal recipe", () => {
    expect(loadRecipe("bad", recipeDir(minimal)).nodes.a!.networks).toEqual({ lan: "10.9.9.2" });
  });

  it("rejects a wrong type with file:line", () => {
    const e = loadError(minimal.replace("networks: { lan: 10.9.9.2 }", "networks: [lan]"));
    expect(e.message).toMatch(/bad\/recipe\.yaml:10: nodes\.a\.networks: expected a map/);
  });

  it("rejects an unknown field and lists the known ones", () => {
    const e = loadError(`${minimal}    colour: red\n`);
    expect(e.message).toMatch(/recipe\.yaml:11: nodes\.a\.colour: unknown field \(expected one of image, container/);
  });

  it("rejects an address outside its network's subnet", () => {
    const e = loadError(minimal.replace("10.9.9.2", "10.9.8.2"));
    expect(e.message).toMatch(/recipe\.yaml:10: .*10\.9\.8\.2 is not inside 10\.9\.9\.0\/24/);
  });

  it("rejects a reference to a network that does not exist", () => {
    const e = loadError(minimal.replace("{ lan: 10.9.9.2 }", "{ wan: 10.9.9.2 }"));
    expect(e.message).toMatch(/no network named "wan"/);
  });

  it("rejects YAML syntax errors with the line", () => {
    const e = loadError(`${minimal}  b: [unclosed\n`);
    expect(e.message).toMatch(/recipe\.yaml:\d+:/);
  });

  it("rejects an action on an unknown node", () => {
    const e = loadError(`${minimal}setup:\n  - { node: ghost, run: "true" }\n`);
    expect(e.message).toMatch(/recipe\.yaml:12: setup\.0\.node: no node named "ghost"/);
  });

  it("names the known recipes for an unknown one", () => {
    expect(() => loadRecipe("recipe-9")).toThrow(
      /Unknown recipe "recipe-9"; the recipes are: recipe-0, recipe-1, recipe-2, recipe-3, recipe-4, recipe-5, going-live/,
    );
  });
});

describe("templates", () => {
  it("render dotted names and refuse unknown ones with file:line", () => {
    expect(render("ip={{ nodes.a.ip.lan }}", { nodes: { a: { ip: { lan: "1.2.3.4" } } } })).toBe("ip=1.2.3.4");
    expect(() => render("x\n{{ nodes.b.ip }}", { nodes: { a: {} } }, "t.conf")).toThrow(/t\.conf:2: \{\{ nodes\.b\.ip \}\} is not defined/);
    expect(placeholders("{{a}} {{ b.c }}")).toEqual(["a", "b.c"]);
  });
});

describe("labs", () => {
  it("a named lab prefixes names and keeps host parts in the remapped subnets", () => {
    const r = loadRecipe("recipe-2");
    const plan = makePlan(r, "a", {}, "run", { home: "10.213.4.0/24", roaming: "10.213.5.0/24" });
    expect(prefixFor("a")).toBe("a-");
    expect(plan.nodes.lighthouse!.container).toBe("a-wg-recipe-2_lighthouse");
    expect(plan.networks.home!.name).toBe("a-recipe-2_home");
    expect(plan.nodes.webserver!.ip.home).toBe("10.213.4.10");
    expect(plan.nodes["home-router"]!.ip).toEqual({ home: "10.213.4.2", roaming: "10.213.5.11" });
  });

  it("options take only the recipe's choices", () => {
    const r = loadRecipe("recipe-3");
    expect(resolveOptions(r, {})).toEqual({ control: "headscale" });
    expect(() => resolveOptions(r, { control: "nope" })).toThrow(/--control must be one of/);
    expect(() => resolveOptions(loadRecipe("recipe-0"), { control: "builtin" })).toThrow(/recipe-0 has no --control option/);
  });

  it("a liveOnly value is refused at start, and allowed as what set applies", () => {
    const r = loadRecipe("recipe-4");
    expect(() => refuseLiveOnlyAtStart(r, { coordinator: "blackholed" })).toThrow(/can only be set on a running lab/);
    expect(() => refuseLiveOnlyAtStart(r, { coordinator: "reachable", "nat-b": "hard" })).not.toThrow();
    expect(resolveOptions(r, { coordinator: "blackholed" }).coordinator).toBe("blackholed");
  });

  it("address arithmetic", () => {
    expect(ipInCidr("192.168.99.10", "192.168.99.0/24")).toBe(true);
    expect(ipInCidr("192.168.98.10", "192.168.99.0/24")).toBe(false);
    expect(cidrsOverlap("10.0.0.0/8", "10.1.99.0/24")).toBe(true);
    expect(cidrsOverlap("10.1.98.0/24", "10.1.99.0/24")).toBe(false);
  });
});
