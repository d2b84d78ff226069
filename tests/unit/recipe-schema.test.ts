import { describe, expect, it } from "vitest";
import { UserError } from "../../src/errors.ts";
import { makePlan } from "../../src/lab/plan.ts";
import { loadRecipe } from "../../src/recipe/load.ts";
import { forOptions } from "../../src/recipe/nodes.ts";
import { recipeOptions } from "../../src/recipe/options.ts";
import { MINIMAL_RECIPE, recipeDir } from "../support/recipes.ts";

/** The loader's checks that come from the one schema (src/recipe/schema.ts): shape, overrides, images. */

function load(yaml: string): ReturnType<typeof loadRecipe> {
  return loadRecipe("bad", recipeDir(yaml));
}

function problems(yaml: string): string[] {
  try {
    load(yaml);
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    return [e.message.replace(/^Recipe bad is not valid: /, ""), ...(e.details?.split("\n") ?? [])].map((p) =>
      p.replace(/^.*recipe\.yaml:/, ""),
    );
  }
  throw new Error("expected the recipe to be rejected");
}

const minimal = MINIMAL_RECIPE;

const withOption = (nodes: string) =>
  `${minimal}options:\n  control:\n    description: d\n    default: x\n    choices:\n      x: {}\n      y:\n        nodes:\n${nodes}`;

describe("shape errors", () => {
  it("come in document order, a map's missing fields after its other problems", () => {
    const yaml = `${minimal.replace("    image: wg-peer\n", "    image: wg-peer\n    imgae: x\n")}  b:\n    image: wg-peer\n    hostname: b\n    networks: { lan: 10.9.9.3 }\n`;
    expect(problems(yaml)).toEqual([
      "8: nodes.a.imgae: unknown field (expected one of image, container, hostname, role, interactive, networks, caps, sysctls, gateway, devices, env, command, files, ready, diagnose, when)",
      '13: nodes.b: missing required field "container"',
    ]);
    expect(problems(minimal.replace("    image: wg-peer", "    imgae: wg-peer"))).toEqual([
      expect.stringMatching(/^7: nodes\.a\.imgae: unknown field/),
      '7: nodes.a: missing required field "image"',
    ]);
  });

  it("name the image roles for an unknown image, at load time", () => {
    expect(problems(minimal.replace("image: wg-peer", "image: nope"))).toEqual([
      '7: nodes.a.image: expected one of base, wg-peer, webserver, tailscale, headscale, control, idp, router, stun, acme, dns, vps-caddy, vps-control, got "nope"',
    ]);
  });

  it("report a field inherited through `<<` once, where the anchor wrote it", () => {
    const yaml = `${minimal.replace("  a:\n", "  a: &p\n")}    colour: red\n  b:\n    <<: *p\n    container: bad_b\n`;
    expect(problems(yaml)).toEqual([expect.stringMatching(/^11: nodes\.a\.colour: unknown field/)]);
  });

  it("refuse a `<<` that merges no map, with its line", () => {
    expect(problems(`${minimal}  b:\n    <<: 5\n`)).toEqual(["12: nodes.b: << must merge a map (an alias like *peer)"]);
  });

  it("refuse an overlay link that does not join two nodes", () => {
    expect(problems(`${minimal}overlay:\n  - { between: [a] }\n`)).toEqual(["12: overlay[0].between: expected two node names"]);
  });

  it("take numbers where text is expected, as YAML reads them", () => {
    const r = load(`${minimal.replace("title: t", "title: 42")}setup:\n  - { node: a, run: "true", expect: { stdoutContains: 200 } }\n`);
    expect(r.title).toBe("42");
    expect(r.setup[0]!.expect).toEqual({ stdoutContains: "200" });
  });
});

describe("option overrides are checked at load, as partial nodes", () => {
  it("an unknown field", () => {
    expect(problems(withOption("          a: { imgae: control }\n"))).toEqual([
      expect.stringMatching(/^19: options\.control\.choices\.y\.nodes\.a\.imgae: unknown field \(expected one of image, container/),
    ]);
  });

  it("a wrong value", () => {
    expect(problems(withOption("          a: { caps: NET_ADMIN }\n"))).toEqual([
      "19: options.control.choices.y.nodes.a.caps: expected a list",
    ]);
  });

  it("a network the recipe does not have, and an address outside the subnet", () => {
    expect(problems(withOption("          a: { networks: { wan: 10.9.9.5 } }\n"))).toEqual([
      '19: options.control.choices.y.nodes.a.networks.wan: no network named "wan" (networks: lan)',
    ]);
    expect(problems(withOption("          a: { networks: { lan: 10.9.8.5 } }\n"))).toEqual([
      "19: options.control.choices.y.nodes.a.networks.lan: 10.9.8.5 is not inside 10.9.9.0/24",
    ]);
  });

  it("a node an option adds must be whole", () => {
    expect(problems(withOption("          c: { image: control, hostname: c, networks: { lan: 10.9.9.5 } }\n"))).toEqual([
      '19: options.control.choices.y.nodes.c: missing required field "container" (c is not in nodes)',
    ]);
    const r = load(withOption("          c: { image: control, container: bad_c, hostname: c, networks: { lan: 10.9.9.5 } }\n"));
    expect(Object.keys(makePlan(r, "default", { control: "y" }, "run").nodes)).toEqual(["a", "c"]);
  });

  it("a missing template file", () => {
    expect(problems(withOption("          a: { files: [{ path: /x, template: nope.conf }] }\n"))).toEqual([
      "19: options.control.choices.y.nodes.a.files.0.template: template file nope.conf does not exist in bad/",
    ]);
  });

  it("`when` names an option and one of its choices", () => {
    expect(problems(`${minimal}    when: colour=red\n`)).toEqual(['11: nodes.a.when: no option named "colour" (options: none)']);
    expect(
      problems(withOption("          c: { image: control, container: c, hostname: c, networks: { lan: 10.9.9.5 }, when: control=z }\n")),
    ).toEqual(['19: options.control.choices.y.nodes.c.when: "z" is not one of the choices of control (x, y)']);
  });

  it("an exercise's `when` too, and a lab sees only the exercises of its option values", () => {
    const exercise = (when: string) =>
      `${withOption("          a: { image: control }\n")}exercises:\n  - { id: e, when: ${when}, title: t, hint: h, check: [{ node: a, run: "true" }] }\n`;
    expect(problems(exercise("control=z"))).toEqual(['21: exercises.0.when: "z" is not one of the choices of control (x, y)']);
    const live = loadRecipe("going-live");
    const ids = (layout: string) => forOptions(live, { layout, control: "headscale" }).exercises.map((e) => e.id);
    expect(ids("headscale")).toEqual(["a-record", "firewall", "certificate", "join", "stun", "server-url", "rate-limit"]);
    expect(ids("caddy")).toEqual(["a-record", "firewall", "caddy", "proxy-upgrade", "join", "stun", "server-url"]);
  });
});

describe("liveOnly choices", () => {
  const liveOnly = (extra: string) =>
    `${minimal}options:\n  cut:\n    description: d\n    default: x\n${extra}    choices:\n      x: {}\n      y: { liveOnly: true }\n`;

  it("need apply actions, or set could never put them in place", () => {
    expect(problems(liveOnly(""))).toEqual([expect.stringMatching(/options\.cut: a liveOnly choice needs `apply` actions/)]);
    expect(load(liveOnly("    apply: [{ node: a, run: 'true' }]\n")).options.cut!.choices.y!.liveOnly).toBe(true);
  });

  it("cannot be the default", () => {
    const yaml = liveOnly("    apply: [{ node: a, run: 'true' }]\n").replace("default: x", "default: y");
    expect(problems(yaml)).toEqual([expect.stringMatching(/options\.cut\.default: "y" is liveOnly/)]);
  });
});

describe("setup steps that run side by side (`needs`)", () => {
  const setup = (steps: string) => `${minimal}setup:\n${steps}`;

  it("name earlier steps only, by id or by what they capture", () => {
    const ok = setup(
      "  - { id: one, node: a, run: 'true' }\n  - { node: a, run: echo k, capture: { as: key } }\n  - { node: a, needs: [one, key], run: 'echo {{ vars.key }}' }\n",
    );
    expect(load(ok).setup.map((s) => s.needs)).toEqual([undefined, undefined, ["one", "key"]]);
    expect(problems(setup("  - { node: a, needs: [later], run: 'true' }\n  - { id: later, node: a, run: 'true' }\n"))).toEqual([
      expect.stringMatching(/setup\.0\.needs: no earlier step named "later" \(named so far: none\)$/),
    ]);
  });

  it("refuse a step that uses a captured value without needing the step that captures it", () => {
    const yaml = setup(
      "  - { id: one, node: a, run: 'true' }\n  - { node: a, run: echo k, capture: { as: key } }\n  - { node: a, needs: [one], run: 'echo {{ vars.key }}' }\n",
    );
    expect(problems(yaml)).toEqual([
      expect.stringMatching(/setup\.2\.needs: uses vars\.key, so it needs the step that captures it \("key"\)$/),
    ]);
    // Through another step is enough: `two` waits for every step before it, `key` among them.
    const through = setup(
      "  - { node: a, run: echo k, capture: { as: key } }\n  - { id: two, node: a, run: 'true' }\n  - { node: a, needs: [two], run: 'echo {{ vars.key }}' }\n",
    );
    expect(load(through).setup).toHaveLength(3);
  });

  it("refuse two steps of one name, and `needs` outside setup", () => {
    expect(problems(setup("  - { id: x, node: a, run: 'true' }\n  - { id: x, node: a, run: 'true' }\n"))).toEqual([
      expect.stringMatching(/setup\.1: a second step named "x"$/),
    ]);
    const exercise = `${minimal}exercises:\n  - id: e\n    title: t\n    hint: h\n    check: [{ node: a, needs: [x], run: 'true' }]\n`;
    expect(problems(exercise)).toEqual([expect.stringMatching(/exercises\.0\.check\.0: `id` and `needs` are for setup steps only/)]);
  });
});

describe("recipe options, as a command line would offer them", () => {
  it("recipe-3 offers --control with its choices, default first in its YAML order", () => {
    expect(recipeOptions(loadRecipe("recipe-3"))).toEqual([
      {
        name: "control",
        flag: "--control",
        description: "which coordination server runs",
        default: "headscale",
        choices: ["headscale", "builtin"],
      },
    ]);
    expect(recipeOptions(loadRecipe("recipe-0"))).toEqual([]);
  });
});
