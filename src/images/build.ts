import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { pack } from "tar-stream";
import { type BinarySet, ensureBinaries } from "../binaries.ts";
import type { Engine } from "../engine/engine.ts";
import { LABEL, PROJECT } from "../engine/labels.ts";
import { UserError } from "../errors.ts";
import { imagesDir } from "../paths.ts";
import { type Progress, stepper } from "../ui/progress.ts";
import { versions } from "../versions.ts";
import { ensureBaseImage } from "./base-image.ts";
import { generatedFiles } from "./bundle.ts";

/** The registry of image roles: one folder in images/ each, optionally a parent and Go binaries. */
export const IMAGE_ROLES = {
  base: { parent: undefined, binaries: [] },
  "wg-peer": { parent: "base", binaries: [] },
  webserver: { parent: "base", binaries: [] },
  tailscale: { parent: "base", binaries: ["tailscale"] },
  headscale: { parent: "base", binaries: ["headscale"] },
  control: { parent: "base", binaries: [] },
} as const satisfies Record<string, { parent?: string; binaries: readonly ("tailscale" | "headscale")[] }>;

export type ImageRole = keyof typeof IMAGE_ROLES;

export function isImageRole(x: string): x is ImageRole {
  return Object.hasOwn(IMAGE_ROLES, x);
}

function contextFiles(role: ImageRole): { name: string; data: Buffer; mode: number }[] {
  const dir = join(imagesDir, role);
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
  result.base = await ensureBaseImage(engine, progress);

  for (const role of missing) {
    const spec = IMAGE_ROLES[role];
    const bins: BinarySet[] = [];
    for (const b of spec.binaries) bins.push(await ensureBinaries(b, progress));
    const step = stepper(progress);
    await step(`build image ${role}`, async (note) => {
      const buildargs: Record<string, string> = {};
      if (spec.parent) buildargs.BASE_IMAGE = imageRef(spec.parent);
      const stream: NodeJS.ReadableStream = (await engine.docker.buildImage(
        tarContext(role, bins) as never,
        {
          t: imageRef(role),
          dockerfile: "Containerfile",
          buildargs,
          labels: { [LABEL.project]: PROJECT, [LABEL.role]: role, [LABEL.inputs]: inputsHash(role) },
          rm: true,
          forcerm: true,
        } as never,
      )) as unknown as NodeJS.ReadableStream;
      signal?.addEventListener("abort", () => (stream as unknown as { destroy?: () => void }).destroy?.(), {
        once: true,
      });
      const lines: string[] = [];
      await new Promise<void>((resolve, reject) => {
        engine.docker.modem.followProgress(
          stream,
          (err: Error | null, out: { error?: string; errorDetail?: { message?: string } }[]) => {
            const failed = out?.find((o) => o.error || o.errorDetail);
            if (err || failed)
              reject(
                new UserError(
                  `Building image ${role} failed: ${err?.message ?? failed?.error ?? failed?.errorDetail?.message}`,
                  1,
                  lines.slice(-20).join(""),
                ),
              );
            else resolve();
          },
          (ev: { stream?: string }) => {
            if (!ev.stream) return;
            lines.push(ev.stream);
            const line = ev.stream.trim();
            if (line) {
              note(line.slice(0, 120));
              progress?.detail(line);
            }
          },
        );
      });
      if (!(await engine.imageExists(imageRef(role)))) {
        throw new UserError(`Building image ${role} ended without an image tagged ${imageRef(role)}.`, 1, lines.slice(-20).join(""));
      }
    });
    result.built.push(role);
    await pruneOldImages(engine, role);
  }
  return result;
}

/** Remove earlier builds of a role (other inputs hash) that no container uses. */
async function pruneOldImages(engine: Engine, role: ImageRole): Promise<void> {
  const images = await engine.docker.listImages({
    filters: JSON.stringify({ label: [`${LABEL.project}=${PROJECT}`, `${LABEL.role}=${role}`] }),
  });
  const keep = inputsHash(role);
  for (const img of images) {
    if (img.Labels?.[LABEL.inputs] === keep) continue;
    await engine.docker
      .getImage(img.Id)
      .remove()
      .catch(() => {});
  }
}
