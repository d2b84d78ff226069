// Runs the CLI from one esbuild bundle, rebuilt whenever src/ is newer than it. Under tsx every
// command transpiled the whole CLI again (about 350 ms of each command); the bundle loads in a
// fraction of that. Plain JavaScript, since Node runs it before any TypeScript loader exists.
import { mkdirSync, readdirSync, renameSync, rmSync, statSync, utimesSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
// At the same depth as src/, so that src/paths.ts's ROOT (its folder's parent) stays the checkout.
const bundle = join(root, ".cache", "cli.mjs");

/** The newest change under dir: a file's mtime, or a folder's (a file added, renamed or removed). */
function newestChange(dir) {
  let newest = statSync(dir).mtimeMs;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestChange(path) : statSync(path).mtimeMs);
  }
  return newest;
}

function mtimeOrZero(path) {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return 0;
  }
}

/** Is the bundle current, rebuilding it if not? False when it cannot be built or written here. */
async function bundleIsCurrent() {
  const sources = Math.max(
    newestChange(join(root, "src")),
    mtimeOrZero(join(root, "package-lock.json")),
    mtimeOrZero(fileURLToPath(import.meta.url)),
  );
  // Within a millisecond: the stamp below goes through a Date (whole milliseconds, then a float
  // of seconds), so an exact comparison would make every run after an edit rebuild the bundle.
  if (mtimeOrZero(bundle) >= sources - 1) return true;
  const tmp = `${bundle}.${process.pid}.tmp`;
  try {
    const { build } = await import("esbuild");
    mkdirSync(dirname(bundle), { recursive: true });
    await build({
      entryPoints: [join(root, "src", "cli", "main.ts")],
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node20",
      // Pure-JavaScript packages go into the bundle: Node 20's ES module loader pays per file,
      // and execa alone is 145 files (230 ms as a package, 60 ms bundled). Kept out: dockerode
      // (loaded lazily, optional native parts) and esbuild (a native binary it finds beside itself).
      external: ["dockerode", "esbuild"],
      banner: { js: "import { createRequire as __wg3Require } from 'node:module'; const require = __wg3Require(import.meta.url);" },
      outfile: tmp,
      logLevel: "silent",
    });
    // Stamped with the sources' time as read before the build, so an edit made during the
    // build still counts as newer next time.
    utimesSync(tmp, new Date(), new Date(sources));
    renameSync(tmp, bundle);
    return true;
  } catch {
    try {
      rmSync(tmp, { force: true });
    } catch {
      // Nothing was written (e.g. .cache is not a folder here).
    }
    return false;
  }
}

async function loadMain() {
  if (await bundleIsCurrent()) {
    // Names this build, for caches of what it derives from files (src/recipe/load.ts).
    const { mtimeMs, size } = statSync(bundle);
    globalThis.wg3BuildId = `${mtimeMs}:${size}`;
    return (await import(pathToFileURL(bundle).href)).main;
  }
  // No bundle (a read-only checkout, or a source that does not build): tsx shows the real error.
  const { register } = await import("tsx/esm/api");
  register();
  return (await import(pathToFileURL(join(root, "src", "cli", "main.ts")).href)).main;
}

const main = await loadMain();
process.exitCode = await main(process.argv.slice(2));
