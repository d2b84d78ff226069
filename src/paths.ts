import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root (where start.ts lives). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/**
 * Expensive, reusable artefacts (Go builds, the debootstrap rootfs) live outside the
 * checkout so that a fresh clone (CI) finds them warm. Keyed by pinned versions.
 */
export function cacheDir(): string {
  if (process.env.WG3_CACHE_DIR) return resolve(process.env.WG3_CACHE_DIR);
  const base = process.env.XDG_CACHE_HOME || join(homedir(), ".cache");
  return join(base, "wg-3-ways");
}

/** Per-checkout state: lab secrets (keys, CA), the project-local containers.conf. */
export function stateDir(): string {
  if (process.env.WG3_STATE_DIR) return resolve(process.env.WG3_STATE_DIR);
  return join(ROOT, ".state");
}

/** The podman API socket that `setup` starts and owns. */
export const OWN_PODMAN_SOCKET = "/run/wg-3-ways/podman.sock";

export const recipesDir = join(ROOT, "recipes");
export const imagesDir = join(ROOT, "images");
