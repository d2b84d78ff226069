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
  if (mtimeOrZero(bundle) >= sources) return true;
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
      packages: "external",
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
  if (await bundleIsCurrent()) return (await import(pathToFileURL(bundle).href)).main;
  // No bundle (a read-only checkout, or a source that does not build): tsx shows the real error.
  const { register } = await import("tsx/esm/api");
  register();
  return (await import(pathToFileURL(join(root, "src", "cli", "main.ts")).href)).main;
}

const main = await loadMain();
process.exitCode = await main(process.argv.slice(2));
