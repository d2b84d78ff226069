import { buildSync } from "esbuild";
import { ROOT } from "../paths.ts";

type Generated = { name: string; data: Buffer<ArrayBuffer>; mode: number };

/**
 * Build-context files that are generated rather than kept in images/<role>/: the builtin
 * control server, bundled from src/control/ into control.mjs for the `control` image, plus a
 * chunk per dynamic import (the ACME client, loaded only by a server that uses it, so the
 * `headscale` CLI does not parse it on every call), and the lab identity provider from src/idp/
 * into idp.mjs for the `idp` image. Bundling pins the exact code into the image (and its
 * content hash), and the container needs only Debian's nodejs, no node_modules.
 */
const GENERATED: Record<string, () => Generated[]> = {
  control: () => bundle("src/control/main.ts", "control"),
  idp: () => bundle("src/idp/main.ts", "idp"),
};

const cache = new Map<string, Generated[]>();

function bundle(entry: string, name: string): Generated[] {
  const hit = cache.get(entry);
  if (hit) return hit;
  const r = buildSync({
    entryPoints: { [name]: entry },
    outdir: "/bundle", // not written: names the files only
    outExtension: { ".js": ".mjs" },
    splitting: true,
    chunkNames: "[name]-[hash]",
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
  const out = r.outputFiles.map((f) => ({ name: f.path.replace(/^\/bundle\//, ""), data: Buffer.from(f.contents), mode: 0o644 }));
  cache.set(entry, out);
  return out;
}

export function generatedFiles(role: string): Generated[] {
  return GENERATED[role]?.() ?? [];
}
