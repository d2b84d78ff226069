import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { pack } from "tar-stream";
import { type BinarySet, ensureBinaries } from "../binaries.ts";
import { BuildError, type Engine } from "../engine/engine.ts";
import { LABEL, PROJECT } from "../engine/labels.ts";
import { UserError } from "../errors.ts";
import { imagesDir } from "../paths.ts";
import { type Progress, stepper } from "../ui/progress.ts";
import { versions } from "../versions.ts";
import { ensureBaseImage } from "./base-image.ts";
import { generatedFiles } from "./bundle.ts";
import { IMAGE_ROLES, type ImageRole } from "./roles.ts";

// The role table lives in roles.ts (no imports), so the recipe loader can read it cheaply.
export { IMAGE_ROLES, type ImageRole, isImageRole } from "./roles.ts";

/** The folder with one sub-folder per role; WG3_IMAGES_DIR replaces it (tests build a changed copy). */
export function imagesRoot(): string {
  return process.env.WG3_IMAGES_DIR ? resolve(process.env.WG3_IMAGES_DIR) : imagesDir;
}

function contextFiles(role: ImageRole): { name: string; data: Buffer; mode: number }[] {
  const dir = join(imagesRoot(), role);
  return readdirSync(dir)
    .sort()
    .filter((f) => statSync(join(dir, f)).isFile())
    .map((f) => ({ name: f, data: readFileSync(join(dir, f)), mode: statSync(join(dir, f)).mode & 0o777 }))
    .concat(generatedFiles(role));
}

/** Content hash of everything that goes into an image: its folder, its parent, pinned versions. */
export function inputsHash(role: ImageRole): string {
  const spec = IMAGE_ROLES[role];
  const h = createHash("sha256");
  h.update(`role=${role}\n`);
  if (spec.parent) h.update(`parent=${inputsHash(spec.parent)}\n`);
  else h.update(`debian=${versions.debian.baseImage}\n`);
  for (const b of spec.binaries) h.update(`bin ${b}=${versions[b]}\n`);
  for (const f of contextFiles(role)) h.update(`file ${f.name} ${f.mode}\n`).update(f.data);
  return h.digest("hex").slice(0, 16);
}

export function imageRef(role: ImageRole): string {
  return `localhost/wg3ways-${role}:${inputsHash(role)}`;
}

function tarContext(role: ImageRole, bins: BinarySet[]): NodeJS.ReadableStream {
  const p = pack();
  for (const f of contextFiles(role)) p.entry({ name: f.name, mode: f.mode }, f.data);
  for (const set of bins) for (const f of set.files) p.entry({ name: f, mode: 0o755 }, readFileSync(join(set.dir, f)));
  p.finalize();
  return p as unknown as NodeJS.ReadableStream;
}

export interface EnsureImagesResult {
  built: ImageRole[];
  reused: ImageRole[];
  base: "present" | "pulled" | "debootstrap";
}

/**
 * Build the given roles (and their parents) unless an image with the same inputs hash exists.
 * The hash tag is applied by the engine only when a build succeeds, so an interrupted build
 * never leaves a half-tagged image.
 */
export async function ensureImages(
  engine: Engine,
  roles: ImageRole[],
  progress?: Progress,
  signal?: AbortSignal,
): Promise<EnsureImagesResult> {
  const result: EnsureImagesResult = { built: [], reused: [], base: "present" };
  const order: ImageRole[] = [];
  const visit = (r: ImageRole) => {
    const parent = IMAGE_ROLES[r].parent;
    if (parent) visit(parent);
    if (!order.includes(r)) order.push(r);
  };
  roles.forEach(visit);

  const missing: ImageRole[] = [];
  for (const r of order) ((await engine.imageExists(imageRef(r))) ? result.reused : missing).push(r);
  if (missing.length === 0) return result;
  const interrupted = (role: ImageRole) => new UserError(`Interrupted while building image ${role}; nothing half-built was tagged.`, 130);
  if (signal?.aborted) throw interrupted(missing[0]!);
  result.base = await ensureBaseImage(engine, progress);

  for (const role of missing) {
    if (signal?.aborted) throw interrupted(role);
    const spec = IMAGE_ROLES[role];
    const bins: BinarySet[] = [];
    for (const b of spec.binaries) bins.push(await ensureBinaries(b, progress, signal));
    if (signal?.aborted) throw interrupted(role);
    const step = stepper(progress);
    await step(`build image ${role}`, async (note) => {
      const buildargs: Record<string, string> = {};
      if (spec.parent) buildargs.BASE_IMAGE = imageRef(spec.parent);
      const busyBefore = new Set(await engine.buildContainers().catch(() => []));
      const lines: string[] = [];
      await engine
        .buildImage({
          context: tarContext(role, bins),
          tag: imageRef(role),
          buildargs,
          labels: { [LABEL.project]: PROJECT, [LABEL.role]: role, [LABEL.inputs]: inputsHash(role) },
          signal,
          onLine: (text) => {
            lines.push(text);
            const line = text.trim();
            if (!line) return;
            note(line.slice(0, 120));
            progress?.detail(line);
          },
        })
        .catch((e) => {
          if (signal?.aborted) return; // a cancelled build; handled below
          if (e instanceof BuildError) throw new UserError(`Building image ${role} failed: ${e.message}`, 1, lines.slice(-20).join(""));
          throw e;
        });
      if (signal?.aborted) {
        progress?.info(`Waiting for the ${engine.kind} builder to drop the build of ${role} (Ctrl-C again to quit now)...`);
        await untilBuildEnds(engine, busyBefore);
        throw interrupted(role);
      }
      if (!(await engine.imageExists(imageRef(role)))) {
        throw new UserError(`Building image ${role} ended without an image tagged ${imageRef(role)}.`, 1, lines.slice(-20).join(""));
      }
    });
    result.built.push(role);
    await pruneOldImages(engine, role);
  }
  return result;
}

/**
 * After Ctrl-C: wait (bounded) until the engine has let go of the build, so that what we say
 * about tags is true when we exit and no build container is left. Podman runs the current
 * step to its end, then stops without tagging and removes its build containers; Docker stops
 * at once. A second Ctrl-C quits at once.
 */
async function untilBuildEnds(engine: Engine, busyBefore: Set<string>, timeoutMs = 300_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    // A failed listing (the engine busy finishing the step) is "not known yet", never "done".
    const listed = await engine.buildContainers().catch(() => undefined);
    if (listed && !listed.some((id) => !busyBefore.has(id))) return;
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Remove earlier builds of a role (other inputs hash) that no container uses. */
async function pruneOldImages(engine: Engine, role: ImageRole): Promise<void> {
  const keep = inputsHash(role);
  for (const img of await engine.listImages(role)) if (img.labels[LABEL.inputs] !== keep) await engine.removeImage(img.id);
}
