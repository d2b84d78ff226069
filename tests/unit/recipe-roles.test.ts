import { describe, expect, it } from "vitest";
import { makePlan } from "../../src/lab/plan.ts";
import { listRecipes, loadRecipe } from "../../src/recipe/load.ts";

/**
 * Capabilities, devices and sysctls come from the image role unless a node says otherwise.
 * This table is what every container got when each node still spelled them out: moving them
 * to the roles must not change a single one.
 */
const BEFORE: Record<string, Record<string, string>> = {
  "recipe-0": {
    "peer-1": "NET_ADMIN+NET_RAW | /dev/net/tun | -",
    "peer-2": "NET_ADMIN+NET_RAW | /dev/net/tun | -",
    "peer-3": "NET_ADMIN+NET_RAW | /dev/net/tun | -",
  },
  "recipe-1": {
    lighthouse: "NET_ADMIN+NET_RAW | /dev/net/tun | net.ipv4.ip_forward=1",
    home: "NET_ADMIN+NET_RAW | /dev/net/tun | -",
    roaming: "NET_ADMIN+NET_RAW | /dev/net/tun | -",
    "home-router": "NET_ADMIN+NET_RAW | - | net.ipv4.ip_forward=1",
  },
  "recipe-2": {
    lighthouse: "NET_ADMIN+NET_RAW | /dev/net/tun | net.ipv4.ip_forward=1",
    "home-router": "NET_ADMIN+NET_RAW | /dev/net/tun | net.ipv4.ip_forward=1",
    roaming: "NET_ADMIN+NET_RAW | /dev/net/tun | -",
    webserver: "NET_ADMIN+NET_RAW | - | -",
  },
  "recipe-3 --control headscale": {
    headscale: "NET_ADMIN+NET_RAW | - | -",
    "home-router": "NET_ADMIN+NET_RAW | - | net.ipv4.ip_forward=1",
    "ts-client-home": "NET_ADMIN+NET_RAW | /dev/net/tun | net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1",
    "ts-client-roaming": "NET_ADMIN+NET_RAW | /dev/net/tun | -",
    webserver: "NET_ADMIN+NET_RAW | - | -",
  },
  "recipe-3 --control builtin": {
    headscale: "NET_ADMIN+NET_RAW | - | -",
    "home-router": "NET_ADMIN+NET_RAW | - | net.ipv4.ip_forward=1",
    "ts-client-home": "NET_ADMIN+NET_RAW | /dev/net/tun | net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1",
    "ts-client-roaming": "NET_ADMIN+NET_RAW | /dev/net/tun | -",
    webserver: "NET_ADMIN+NET_RAW | - | -",
  },
};

/** Every recipe under every choice of its options, as "recipe --opt choice". */
function variants(): [string, string, Record<string, string>][] {
  return listRecipes().flatMap((name) => {
    let combos: Record<string, string>[] = [{}];
    for (const [o, spec] of Object.entries(loadRecipe(name).options))
      combos = combos.flatMap((c) => Object.keys(spec.choices).map((v) => ({ ...c, [o]: v })));
    return combos.map((c): [string, string, Record<string, string>] => [
      [name, ...Object.entries(c).map(([o, v]) => `--${o} ${v}`)].join(" "),
      name,
      c,
    ]);
  });
}

describe("image role defaults", () => {
  it("give every container the same caps, devices and sysctls as before", () => {
    const now: Record<string, Record<string, string>> = {};
    // The recipes that predate the role table; newer ones were written against it.
    for (const [label, name, options] of variants().filter(([, name]) => ["recipe-0", "recipe-1", "recipe-2", "recipe-3"].includes(name))) {
      const plan = makePlan(loadRecipe(name), "default", options, "run");
      now[label] = Object.fromEntries(
        Object.entries(plan.nodes).map(([k, n]) => {
          const sysctls = Object.entries(n.sysctls).map(([s, v]) => `${s}=${v}`);
          return [k, `${n.caps.join("+") || "-"} | ${n.devices.join(" ") || "-"} | ${sysctls.join(" ") || "-"}`];
        }),
      );
    }
    expect(now).toEqual(BEFORE);
  });

  it("are left to the roles: no shipped recipe repeats them", () => {
    for (const name of listRecipes()) {
      for (const [k, n] of Object.entries(loadRecipe(name).nodes)) {
        expect(n.caps, `${name} ${k}`).toBeUndefined();
        if (n.devices) expect(n.devices, `${name} ${k}: only an opt-out`).toEqual([]);
      }
    }
  });
});
