/** A seeded mutator of JSON requests, for the fuzz tests (unit and integration). */
import { seededRandom } from "../../../bench/lib/stats.ts";

/** The fuzz tests' seeded PRNG: the benchmarks' mulberry32, so a seed replays a run. */
export const prng = seededRandom;

const WEIRD: unknown[] = [
  "discokey:not-hex",
  "not-an-ip:port",
  "1.2.3.4:99999",
  "[::1]:1",
  "10.0.0.0/99",
  "true",
  138.5,
  -1,
  2 ** 60,
  1.5e308,
  null,
  true,
  "",
  "x".repeat(5000),
  [],
  {},
  ["not-an-ip:port"],
  [1, 2],
  { "": 1 },
  `nodekey:${"0".repeat(64)}`,
  `discokey:${"A".repeat(64)}`,
  "01.2.3.4:5",
  "fe80::1%eth0",
];

/** Replace or delete one random leaf (or whole subtree) of a JSON value. */
export function mutate(v: unknown, rnd: () => number): unknown {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  if (v === null || typeof v !== "object" || rnd() < 0.15) return pick(WEIRD);
  const copy: Record<string, unknown> | unknown[] = Array.isArray(v) ? [...v] : { ...(v as Record<string, unknown>) };
  const keys = Object.keys(copy);
  if (!keys.length) return pick(WEIRD);
  const k = pick(keys);
  if (rnd() < 0.1 && !Array.isArray(copy)) delete copy[k];
  else (copy as Record<string, unknown>)[k] = mutate((copy as Record<string, unknown>)[k], rnd);
  return copy;
}
