import { existsSync, mkdirSync, renameSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import type { Engine } from "../engine/engine.ts";
import { LABEL, PROJECT } from "../engine/labels.ts";
import { UserError } from "../errors.ts";
import { cacheDir } from "../paths.ts";
import { type Progress, stepper } from "../ui/progress.ts";
import { versions } from "../versions.ts";

/** Engines store a short name under different full names; check the forms people use. */
function baseRefs(): string[] {
  const ref = versions.debian.baseImage;
  return [ref, `docker.io/library/${ref}`];
}

export async function baseImagePresent(engine: Engine): Promise<boolean> {
  for (const r of baseRefs()) if (await engine.imageExists(r)) return true;
  return false;
}

/** A minbase rootfs tarball of the pinned Debian suite, built once and cached. */
async function rootfsTarball(_progress?: Progress): Promise<string> {
  const { suite, mirror } = versions.debian;
  const tar = join(cacheDir(), "rootfs", `debian-${suite}-minbase-amd64.tar`);
  if (existsSync(tar) && statSync(tar).size > 0) return tar;
  if ((await execa("sh", ["-c", "command -v debootstrap"], { reject: false })).exitCode !== 0) {
    throw new UserError(
      `${versions.debian.baseImage} is not in the engine and cannot be pulled, and debootstrap is missing to build it; run ./start.ts setup (or apt-get install debootstrap).`,
    );
  }
  mkdirSync(join(cacheDir(), "rootfs"), { recursive: true });
  const dir = `${tar}.dir-${process.pid}`;
  const partial = `${tar}.partial-${process.pid}`;
  try {
    await execa("debootstrap", ["--variant=minbase", suite, dir, mirror], { all: true }).catch((e) => {
      throw new UserError(`debootstrap ${suite} from ${mirror} failed; is Debian's mirror reachable?`, 1, String(e.all ?? e));
    });
    // The same trims the official -slim image makes; apt lists are refetched by every Containerfile.
    await execa("sh", [
      "-c",
      `rm -rf ${dir}/var/cache/apt/archives/*.deb ${dir}/var/lib/apt/lists/* ${dir}/usr/share/doc/* ${dir}/usr/share/man/*`,
    ]);
    await execa("tar", ["--numeric-owner", "-C", dir, "-cf", partial, "."]);
    renameSync(partial, tar);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(partial, { force: true });
  }
  return tar;
}

/**
 * Make `debian:bookworm-slim` exist in the engine: present, pulled, or built offline with
 * debootstrap and imported under that very name (so Containerfiles are the same everywhere).
 */
export async function ensureBaseImage(engine: Engine, progress?: Progress): Promise<"present" | "pulled" | "debootstrap"> {
  if (await baseImagePresent(engine)) return "present";
  const step = stepper(progress);
  if ((await engine.pullImage(versions.debian.baseImage)) && (await baseImagePresent(engine))) return "pulled";
  progress?.info(`${versions.debian.baseImage} cannot be pulled here: building it offline from Debian's mirror with debootstrap.`);
  const tar = await step(`debootstrap ${versions.debian.suite} (offline base image)`, () => rootfsTarball(progress));
  await step(`import ${versions.debian.baseImage}`, async () => {
    await engine.importImage(tar, versions.debian.baseImage, [`LABEL ${LABEL.project}=${PROJECT}`, `CMD ["bash"]`]);
    if (!(await baseImagePresent(engine))) throw new Error(`import finished but ${versions.debian.baseImage} is not listed`);
  });
  return "debootstrap";
}
