import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "./paths.ts";

export interface Versions {
  tailscale: string;
  headscale: string;
  "wireguard-go": string;
  goMinimum: string;
  debian: { suite: string; mirror: string; baseImage: string };
}

/** The one place versions are pinned: versions.json at the repository root. */
export const versions: Versions = JSON.parse(readFileSync(join(ROOT, "versions.json"), "utf8"));
