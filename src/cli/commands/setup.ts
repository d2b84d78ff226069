import { ensureBinaries } from "../../binaries.ts";
import { chromiumPath, ensureChromium } from "../../browser.ts";
import { ensureEngine, installPackages, isRoot } from "../../engine/ensure.ts";
import { ensureImages, IMAGE_ROLES, type ImageRole } from "../../images/build.ts";
import { hasTmux } from "../../workspace/tmux.ts";
import type { Command } from "../command.ts";

export const setupCommand: Command = {
  name: "setup",
  usage: "setup [--yes]",
  summary: "install and start a container engine, build the pinned binaries and the images",
  details:
    "On Debian/Ubuntu as root, when no engine answers: apt-get installs podman, runc, netavark, aardvark-dns,\n" +
    "iptables, debootstrap, tmux, openssl and ca-certificates; writes /run/wg-3-ways/containers.conf (runc,\n" +
    "cgroupfs, rlimits that work on hybrid-cgroup hosts, netavark networking so lab bridges are isolated) and\n" +
    "starts `podman system service` on /run/wg-3-ways/podman.sock.\n" +
    "Docker Engine is used as is when its socket answers (or DOCKER_HOST is set).\n" +
    "Then it builds Tailscale and Headscale (go install, pinned in versions.json) and every image in images/.\n" +
    "As root, it also installs Debian's chromium when missing: the classroom's browser tests drive it headless.",
  flags: [{ name: "yes", help: "do not ask before installing packages" }],
  async run(p, ctx) {
    const engine = await ensureEngine({
      allowSetup: true,
      yes: Boolean(p.flags.yes),
      progress: ctx.progress,
    });
    ctx.progress.info(`engine: ${engine.kind} ${engine.version} at ${engine.dockerHost}`);
    if (isRoot() && !(await hasTmux()))
      await installPackages({ yes: Boolean(p.flags.yes), progress: ctx.progress }, ["tmux", "openssl", "debootstrap"]);
    if (isRoot()) ctx.progress.info(`chromium: ${await ensureChromium({ yes: Boolean(p.flags.yes), progress: ctx.progress })}`);
    else if (!chromiumPath())
      ctx.progress.info("chromium is not installed: the classroom's browser tests need it (apt-get install chromium, as root).");
    for (const b of ["tailscale", "headscale"] as const) {
      const set = await ensureBinaries(b, ctx.progress, ctx.signal);
      ctx.progress.info(`${b} ${set.version}: ${set.via}, ${set.dir}`);
    }
    const r = await ensureImages(engine, Object.keys(IMAGE_ROLES) as ImageRole[], ctx.progress, ctx.signal);
    ctx.progress.info(`images: built ${r.built.join(", ") || "none"}, current ${r.reused.join(", ") || "none"}`);
    ctx.progress.info("Ready. Next: ./start.ts doctor, then ./start.ts recipe-0");
    return 0;
  },
};
