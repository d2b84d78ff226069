import { buildSync } from "esbuild";
import { ROOT } from "../paths.ts";

/**
 * Build-context files that are generated rather than kept in images/<role>/: the builtin
 * control server, bundled from src/control/ into one ES module for the `control` image, and
 * the lab identity provider from src/idp/ for the `idp` image.
 * Bundling pins the exact code into the image (and its content hash), and the container needs
 * only Debian's nodejs, no node_modules.
 */
const GENERATED: Record<string, () => { name: string; data: Buffer<ArrayBuffer>; mode: number }[]> = {
  control: () => [{ name: "control.mjs", data: bundle("src/control/main.ts"), mode: 0o644 }],
  idp: () => [{ name: "idp.mjs", data: bundle("src/idp/main.ts"), mode: 0o644 }],
};

const cache = new Map<string, Buffer<ArrayBuffer>>();

function bundle(entry: string): Buffer<ArrayBuffer> {
  const hit = cache.get(entry);
  if (hit) return hit;
  const r = buildSync({
    entryPoints: [entry],
    absWorkingDir: ROOT, // paths in the output are relative to the repo: the same bytes in any clone
    bundle: true,
    platform: "node",
    format: "esm",
    // The container runs Debian bookworm's nodejs (18.x).
    target: "node18",
    write: false,
    legalComments: "none",
    banner: { js: "import { createRequire as __wg3Require } from 'node:module'; const require = __wg3Require(import.meta.url);" },
    logLevel: "silent",
  });
  const out = Buffer.from(r.outputFiles[0]!.contents);
  cache.set(entry, out);
  return out;
}

export function generatedFiles(role: string): { name: string; data: Buffer<ArrayBuffer>; mode: number }[] {
  return GENERATED[role]?.() ?? [];
}
