import { describe, expect, it } from "vitest";
import { resolveOptions } from "../../src/lab/plan.ts";
import { exercisesBefore, freshOptions } from "../../src/lab/reset.ts";
import { loadRecipe } from "../../src/recipe/load.ts";
import { forOptions } from "../../src/recipe/nodes.ts";

describe("reset", () => {
  it("replays the exercises before the one named, in the recipe's order; none without --to", () => {
    const r = loadRecipe("recipe-1");
    expect(exercisesBefore(r, "ping").map((e) => e.id)).toEqual(["peers", "up"]);
    expect(exercisesBefore(r, "peers")).toEqual([]);
    expect(exercisesBefore(r)).toEqual([]);
  });

  it("knows only the exercises of the lab's options, and lists them when one is unknown", () => {
    const base = loadRecipe("going-live");
    const caddy = forOptions(base, resolveOptions(base, { layout: "caddy" }));
    expect(exercisesBefore(caddy, "join").map((e) => e.id)).toEqual(["a-record", "firewall", "caddy", "proxy-upgrade"]);
    const headscale = forOptions(base, resolveOptions(base, {}));
    expect(() => exercisesBefore(headscale, "caddy")).toThrow(
      'going-live has no exercise "caddy"; its exercises are: a-record, firewall, certificate, join, stun, server-url, rate-limit.',
    );
  });

  it("keeps the lab's options, live ones as set, except a value only a running lab can have", () => {
    const r = loadRecipe("recipe-4");
    const options = { ...resolveOptions(r, {}), "nat-b": "hard", "loss-a": "10", coordinator: "blackholed" };
    expect(freshOptions(r, options)).toEqual({
      options: { ...options, coordinator: "reachable" },
      dropped: ["coordinator=blackholed"],
    });
    // Negative control: nothing live-only, nothing dropped.
    expect(freshOptions(r, { ...options, coordinator: "reachable" }).dropped).toEqual([]);
  });
});
