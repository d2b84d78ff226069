import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { LabTarget } from "../../src/guide/lab-target.ts";
import { parseGuide } from "../../src/guide/parse.ts";
import { runGuide } from "../../src/guide/run.ts";
import { ROOT } from "../../src/paths.ts";
import { LabHandle } from "../support/lab-handle.ts";
import { testLabName } from "../support/labs.ts";

/**
 * Exercises that pass as soon as the lab is up (recipe-3's harness registers the nodes and its
 * checks probe the mesh; recipe-4 starts on easy NAT, the first stage), and those that do not
 * pass once the reader is through (recipe-4's exercises are stages: the last setting passes).
 */
const STATES = {
  "recipe-0": { atStart: [] },
  "recipe-1": { atStart: [] },
  "recipe-2": { atStart: [] },
  "recipe-3": { atStart: ["nodes-online", "tracepath", "curl", "magicdns"] },
  "recipe-4": { atStart: ["easy-direct"], notAtEnd: ["easy-direct", "hard-relayed", "forward-fix"] },
  // The reader turns the exit node off after its check (alice reaches the coordinator directly again).
  "recipe-5": { atStart: [], notAtEnd: ["exit-node"] },
} satisfies Record<string, { atStart: string[]; notAtEnd?: string[] }>;

/**
 * A guide, run as its reader would: every marked block in the guide's order, in the pane it
 * names, against a lab of that recipe (its own names: the guide's default names and addresses
 * are mapped to the lab's), each output compared with the guide's. One file per guide
 * (tests/e2e/guide-*.test.ts), so that the guides run side by side.
 */
export function guideSuite(recipe: keyof typeof STATES): void {
  describe(`labs/${recipe}.md runs as written`, () => {
    let lab: LabHandle | undefined;
    afterEach(async () => {
      await lab?.stop();
      lab = undefined;
    });

    it("every block, in order, prints what the guide shows", async () => {
      const file = `labs/${recipe}.md`;
      const guide = parseGuide(readFileSync(join(ROOT, file), "utf8"), file);
      lab = await LabHandle.start(recipe, { lab: testLabName(`guide-${recipe.slice(-1)}`) });
      // Control: before the reader's first step, only what the start itself did passes.
      expect((await lab.checkAll()).filter((c) => c.ok).map((c) => c.exercise)).toEqual(STATES[recipe].atStart);
      const log: string[] = [];
      const t0 = Date.now();
      await runGuide(guide, new LabTarget(lab.engine, lab.recipe, lab.plan), { log: (l) => log.push(l) });
      console.log(`${file}: ${guide.steps.length} blocks in ${Date.now() - t0} ms\n${log.join("\n")}`);
      expect((await lab.checkAll()).filter((c) => !c.ok).map((c) => c.exercise)).toEqual(
        (STATES[recipe] as { notAtEnd?: string[] }).notAtEnd ?? [],
      );
      // A whole guide: recipe-5's waits out an ephemeral node's 70 s and two failovers (each block has its own deadline).
    }, 900_000);
  });
}
