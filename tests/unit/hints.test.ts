import { describe, expect, it } from "vitest";
import { describeGraded, type Graded, hintLadder, nextLevel } from "../../src/lab/hints.ts";
import { loadRecipe } from "../../src/recipe/load.ts";

describe("hints", () => {
  const ex = loadRecipe("recipe-0").exercises.find((e) => e.id === "configure")!;

  it("one more per failing check, up to the last, counted per exercise", () => {
    const levels = {};
    expect(hintLadder(ex)).toHaveLength(3);
    expect([nextLevel(levels, ex), nextLevel(levels, ex), nextLevel(levels, ex), nextLevel(levels, ex)]).toEqual([1, 2, 3, 3]);
    expect(levels).toEqual({ configure: 3 });
  });

  it("check's lines: the latest hint with its rank, then one line per mistake seen; a probing check says so", () => {
    const failing: Graded = {
      id: "configure",
      title: "t",
      state: "not yet",
      probes: false,
      hint: "second",
      hintsShown: ["first", "second"],
      hintCount: 3,
      mistakes: [{ node: "peer-3", hint: "peer-3: 1 [Peer] section(s), expected 2 (one per other peer)." }],
    };
    expect(describeGraded(failing, false)).toEqual([
      "not yet  configure: t",
      "         hint 2/3: second",
      "         seen: peer-3: 1 [Peer] section(s), expected 2 (one per other peer).",
    ]);
    expect(describeGraded({ id: "curl", title: "t", state: "pass", probes: true, hintCount: 1 }, false)).toEqual([
      "pass     curl: t (check sent its own probe)",
    ]);
  });
});
