/** A seeded mutator of JSON requests, for the fuzz tests (unit and integration). */

export function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

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
