import { BINARY_NAMES, ensureBinaries } from "../../src/binaries.ts";
import { ensureChromium } from "../../src/browser.ts";
import { ensureEngine } from "../../src/engine/ensure.ts";
import { ensureImages, IMAGE_ROLES, type ImageRole } from "../../src/images/build.ts";
import { Progress } from "../../src/ui/progress.ts";

/**
 * Before any e2e file: a live engine, the pinned binaries and every image, built once (or
 * found in the cache). Prints how long each phase took, so cold and warm runs can be compared.
 */
export default async function setup(): Promise<void> {
  const progress = new Progress(process.stderr, process.env.WG3_VERBOSE === "1");
  const t0 = Date.now();
  const engine = await ensureEngine({ allowSetup: true, yes: true, progress });
  const tEngine = Date.now();
  for (const b of BINARY_NAMES) await ensureBinaries(b, progress);
  const tBins = Date.now();
  const r = await ensureImages(engine, Object.keys(IMAGE_ROLES) as ImageRole[], progress);
  const tImages = Date.now();
  // The classroom's browser test drives Debian's chromium; setup installs it, and so does this.
  const chromium = await ensureChromium({ yes: true, progress });
  const s = (a: number, b: number) => `${((b - a) / 1000).toFixed(1)}s`;
  process.stderr.write(
    `e2e prerequisites: engine ${engine.kind} ${engine.version} (${s(t0, tEngine)}), binaries (${s(tEngine, tBins)}), ` +
      `images built [${r.built.join(", ") || "none"}] reused [${r.reused.join(", ") || "none"}] (${s(tBins, tImages)}), ` +
      `chromium ${chromium} (${s(tImages, Date.now())})\n`,
  );
}
