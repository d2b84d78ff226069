import { describe, expect, it } from "vitest";
import { scorecardRows, scorecardSvg } from "../../src/graph/scorecard.ts";
import {
  configLineCount,
  parsePingAvg,
  parseTracepath,
  SCORE_SPECS,
  type Scorecard,
  scoreSpec,
  typedCommands,
} from "../../src/lab/scorecard.ts";
import { loadRecipe } from "../../src/recipe/load.ts";
import { startTs } from "../support/start-ts.ts";

const TRACEPATH_REACHED = ` 1?: [LOCALHOST]                      pmtu 1420
 1:  172.16.100.1                                          0.512ms
 1:  172.16.100.1                                          0.301ms
 2:  172.16.100.2                                          0.634ms
 3:  192.168.99.10                                         0.921ms reached
     Resume: pmtu 1420 hops 3 back 3
`;

const TRACEPATH_LOST = ` 1?: [LOCALHOST]                      pmtu 1420
 1:  172.16.100.1                                          0.512ms
 2:  no reply
 3:  no reply
     Too many hops: pmtu 1420
     Resume: pmtu 1420
`;

function card(over: Partial<Scorecard> = {}): Scorecard {
  return {
    recipe: "recipe-2",
    title: "Lighthouse + Subnet Router",
    lab: "default",
    from: "roaming",
    reach: { target: "192.168.99.10", reached: true, hops: 3, path: ["172.16.100.1", "172.16.100.2", "192.168.99.10"], rttMs: 1.3 },
    payload: {
      marker: "wg3-scorecard-x",
      delivered: { node: "home-router", as: "home router", reads: true, packets: 20 },
      middle: [{ node: "lighthouse", as: "lighthouse", reads: true, packets: 20 }],
    },
    handWritten: { configLines: { lighthouse: 10, "home-router": 11, roaming: 9 }, commands: 3, total: 33 },
    keys: [
      { node: "lighthouse", own: 1, others: 2, from: "wg show" },
      { node: "roaming", own: 1, others: 1, from: "wg show" },
    ],
    ...over,
  };
}

const UNSOLVED = card({
  recipe: "recipe-1",
  reach: { target: "172.16.100.2", reached: false, path: [] },
  payload: {
    marker: "m",
    delivered: { node: "home", as: "home peer", reads: false, packets: 0 },
    middle: [{ node: "lighthouse", as: "lighthouse <wg>", reads: false, packets: 0 }],
  },
});

describe("scorecard probes' parsing", () => {
  it("reads ping's average round trip, and nothing from a ping without answers", () => {
    expect(parsePingAvg("5 packets transmitted, 5 received\nrtt min/avg/max/mdev = 0.101/1.301/2.5/0.2 ms")).toBe(1.301);
    expect(parsePingAvg("5 packets transmitted, 0 received, 100% packet loss")).toBeUndefined();
  });

  it("reads tracepath's hops and path only when the target answered", () => {
    expect(parseTracepath(TRACEPATH_REACHED, "192.168.99.10")).toEqual({
      hops: 3,
      path: ["172.16.100.1", "172.16.100.2", "192.168.99.10"],
    });
    expect(parseTracepath(TRACEPATH_LOST, "192.168.99.10")).toEqual({ hops: undefined, path: ["172.16.100.1"] });
  });

  it("counts config lines that say something: no blanks, no comments", () => {
    expect(configLineCount("[Interface]\n# a comment\n\nPrivateKey = x\n  ; also a comment\nAddress = 1\n")).toBe(3);
  });

  it("counts the commands a person types, not the observing exercises' steps", () => {
    // recipe-3: users create, two pre-auth keys, approve-routes, two tailscale up; no-plaintext's tcpdumps are out.
    expect(typedCommands(loadRecipe("recipe-3"), scoreSpec("recipe-3")!)).toBe(6);
    // recipe-1: wg-quick up on each of three; the home router's NAT is not the VPN's.
    expect(typedCommands(loadRecipe("recipe-1"), scoreSpec("recipe-1")!)).toBe(3);
  });

  it("names only nodes the recipes have", () => {
    for (const s of SCORE_SPECS) {
      const nodes = Object.keys(loadRecipe(s.recipe).nodes);
      const named = [
        s.from,
        s.to.node,
        s.exit.node,
        ...s.middle.map((m) => m.node),
        ...s.keys.map((k) => k.node),
        ...s.configNodes,
        ...s.commandNodes,
      ];
      for (const n of named) expect(nodes, `${s.recipe}: ${n}`).toContain(n);
      const ids = loadRecipe(s.recipe).exercises.map((e) => e.id);
      for (const e of s.observeExercises) expect(ids, `${s.recipe}: ${e}`).toContain(e);
    }
  });
});

describe("scorecard rendering", () => {
  it("a solved lab's row: hops with the path, RTT, who reads, lines, keys", () => {
    const [head, row] = scorecardRows([card()]);
    expect(head).toContain("who reads the payload");
    expect(row).toEqual([
      "recipe-2",
      "roaming -> 192.168.99.10",
      "3 (172.16.100.1 > 172.16.100.2 > 192.168.99.10)",
      "1.30 ms",
      "lighthouse: yes",
      "30 config lines + 3 commands",
      "lighthouse 1+2, roaming 1+1",
    ]);
  });

  it("an unsolved lab's row says unreachable and that the marker never arrived", () => {
    const row = scorecardRows([UNSOLVED])[1]!;
    expect(row[2]).toBe("unreachable");
    expect(row[3]).toBe("-");
    expect(row[4]).toBe("lighthouse <wg>: no (0 packets) (marker not delivered)");
    const noCapture = { ...UNSOLVED.payload, middle: [{ ...UNSOLVED.payload.middle[0]!, error: "no interface recipe-1" }] };
    expect(scorecardRows([{ ...UNSOLVED, payload: noCapture }])[1]![4]).toBe(
      "lighthouse <wg>: no capture (no interface recipe-1) (marker not delivered)",
    );
  });

  it("the SVG has one text per cell, escaped, and red where a middle node reads or nothing answers", () => {
    const svg = scorecardSvg([card(), UNSOLVED]);
    expect(svg.startsWith("<svg xmlns")).toBe(true);
    expect(svg.trimEnd().endsWith("</svg>")).toBe(true);
    expect(svg.match(/<text /g)).toHaveLength(1 + 3 * 7);
    expect(svg).toContain("lighthouse &lt;wg&gt;");
    expect(svg).not.toContain("<wg>");
    expect(svg).toMatch(/fill="#b42318">lighthouse: yes</);
    expect(svg).toMatch(/fill="#b42318">unreachable</);
    expect(svg).toMatch(/fill="#222">lighthouse &lt;wg&gt;: no/);
  });
});

describe("./start.ts scorecard, bad input", () => {
  const run = (args: string[]) => startTs(args, { env: { DOCKER_HOST: "unix:///nonexistent/wg3.sock" } });

  it("refuses a recipe it does not compare, and an --svg into no directory, before any engine", async () => {
    const r4 = await run(["scorecard", "recipe-4"]);
    expect(r4.code).toBe(2);
    expect(r4.stderr.trim()).toBe('The scorecard compares recipe-0, recipe-1, recipe-2, recipe-3; "recipe-4" is not one of them.');
    const svg = await run(["scorecard", "--svg", "/nonexistent/dir/s.svg"]);
    expect(svg.code).toBe(2);
    expect(svg.stderr).toMatch(/^--svg \/nonexistent\/dir\/s\.svg: the directory \/nonexistent\/dir does not exist\.\n$/);
  });

  it("--help says what each column measures", async () => {
    const r = await run(["scorecard", "--help"]);
    expect(r.code).toBe(0);
    for (const w of ["tracepath", "marker", "by hand", "keys", "--no-start", "--svg FILE"]) expect(r.stdout).toContain(w);
  });
});
