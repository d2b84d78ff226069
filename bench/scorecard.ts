import { join } from "node:path";
import { handText, hopsText, keysText, payloadText } from "../src/graph/scorecard.ts";
import type { Scorecard } from "../src/lab/scorecard.ts";
import { ROOT } from "../src/paths.ts";
import { startTs } from "../tests/support/start-ts.ts";
import { type BenchContext, type Benchmark, warmEngine } from "./lib/bench.ts";
import { BENCH_LAB } from "./lib/labs.ts";
import type { Bar } from "./lib/types.ts";

/** Where the guides embed the scorecard from. */
export const SCORECARD_SVG = join(ROOT, "labs", "scorecard.svg");

/**
 * The scorecard as typed (`./start.ts scorecard --svg labs/scorecard.svg`): recipes 0-3 started
 * in the bench lab, solved, measured and stopped; it rewrites the SVG the guides embed.
 */
export const scorecard: Benchmark = {
  name: "scorecard",
  title: "Scorecard: recipes 0-3 measured in their labs (hops, RTT, who reads the payload, lines by hand, keys)",
  minutes: "~2 min (four labs started, solved and stopped one after another)",
  options: {},
  async run(ctx: BenchContext) {
    const t0 = Date.now();
    // Its labs have a name and subnets of their own: other labs only share the CPU (RTTs are sub-ms to ms).
    await warmEngine(ctx, { allowRunning: true });
    const r = await startTs(["scorecard", "--lab", BENCH_LAB, "--svg", SCORECARD_SVG, "--json"]);
    if (r.code !== 0) throw new Error(`./start.ts scorecard exited ${r.code}: ${r.stderr.trim().split("\n").at(-1)}`);
    const cards = (JSON.parse(r.stdout) as { scorecards: Scorecard[] }).scorecards;
    ctx.log(`wrote ${SCORECARD_SVG}`);
    const rows = cards.map((c) => ({
      recipe: c.recipe,
      probe: `${c.from} -> ${c.reach.target}`,
      hops: hopsText(c),
      rtt: c.reach.rttMs ?? null,
      payload: payloadText(c),
      hand: handText(c),
      keys: keysText(c),
    }));
    const bars: Bar[] = cards.map((c) => ({ label: c.recipe, segments: [{ name: "", value: c.reach.rttMs ?? 0 }] }));
    return {
      name: "scorecard",
      title: scorecard.title,
      status: cards.every((c) => c.reach.reached && c.payload.delivered.reads) ? "ok" : "partial",
      machine: ctx.machine,
      params: {},
      durationS: Math.round((Date.now() - t0) / 1000),
      columns: [
        { key: "recipe", label: "recipe" },
        { key: "probe", label: "probe" },
        { key: "hops", label: "hops" },
        { key: "rtt", label: "RTT", unit: "ms" },
        { key: "payload", label: "who reads the payload" },
        { key: "hand", label: "written by hand" },
        { key: "keys", label: "keys (own+others)" },
      ],
      rows,
      headlines: cards.map((c) => ({
        label: `${c.recipe} hops / RTT`,
        value: `${c.reach.hops ?? "unreachable"} / ${c.reach.rttMs?.toFixed(2) ?? "-"} ms`,
      })),
      chart: { title: "Round trip, roaming node to the webserver (recipe-0/1: far peer)", unit: "ms", bars },
      notes: [
        "`./start.ts scorecard --lab bench --svg labs/scorecard.svg`: each recipe started, every reference solution applied, measured, stopped.",
        "Payload: a unique marker sent through while tcpdump captures on the middle node and where it leaves the overlay; the picture the guides embed is labs/scorecard.svg.",
      ],
      raw: cards,
    };
  },
};
