import { existsSync } from "node:fs";
import { execa } from "execa";
import { cachedBinaries, goVersion } from "./binaries.ts";
import { describeNoEngine, findEngine } from "./engine/connect.ts";
import { Engine } from "./engine/engine.ts";
import { usedSubnets } from "./engine/subnets.ts";
import { baseImagePresent } from "./images/base-image.ts";
import { IMAGE_ROLES, type ImageRole, imageRef } from "./images/build.ts";
import { cidrsOverlap, listRecipes, loadRecipe } from "./recipe/load.ts";
import { versions } from "./versions.ts";

export interface Finding {
  name: string;
  status: "ok" | "missing" | "warn";
  detail: string;
  fix?: string;
}

async function has(cmd: string): Promise<boolean> {
  return (await execa("sh", ["-c", `command -v ${cmd}`], { reject: false })).exitCode === 0;
}

/** Every prerequisite of a lab, each ok / missing (blocks a lab) / warn (a lab still starts). */
export async function diagnose(): Promise<Finding[]> {
  const out: Finding[] = [];
  const found = await findEngine();
  let engine: Engine | undefined;
  if (found.live) {
    engine = new Engine(found.live.endpoint.dockerHost, found.live.kind!, found.live.version ?? "?");
    out.push({
      name: "container engine",
      status: "ok",
      detail: `${engine.kind} ${engine.version} at ${engine.dockerHost} (${found.live.endpoint.source})`,
    });
    const info = (await engine.docker.info()) as { DefaultRuntime?: string; CgroupVersion?: string };
    out.push({
      name: "OCI runtime",
      status: "ok",
      detail: `${info.DefaultRuntime ?? "?"} (cgroups v${info.CgroupVersion ?? "?"})`,
    });
  } else {
    const podman = await has("podman");
    out.push({
      name: "container engine",
      status: "missing",
      detail: describeNoEngine(found.probes),
      fix: podman
        ? "sudo ./start.ts setup   (starts a podman API service)"
        : "sudo ./start.ts setup   (installs podman + runc from your distribution)",
    });
  }
  out.push(
    existsSync("/dev/net/tun")
      ? { name: "/dev/net/tun", status: "ok", detail: "present (WireGuard and tailscaled need it)" }
      : {
          name: "/dev/net/tun",
          status: "missing",
          detail: "absent",
          fix: "sudo modprobe tun (or enable TUN in your VM/container host)",
        },
  );
  out.push(
    existsSync("/sys/module/wireguard")
      ? { name: "WireGuard", status: "ok", detail: "kernel module loaded" }
      : {
          name: "WireGuard",
          status: "ok",
          detail: "no kernel module: wg-quick falls back to wireguard-go in the containers (slower, same lessons)",
        },
  );

  // Subnets the default lab needs.
  if (engine) {
    const recipes = listRecipes().flatMap((r) => {
      try {
        return [loadRecipe(r)];
      } catch {
        return [];
      }
    });
    const subnets = [...new Set(recipes.flatMap((r) => Object.values(r.networks).map((n) => n.subnet)))];
    const foreign: string[] = [];
    // Our own labs holding them is fine: that is what stop is for. Anyone else is worth a warning.
    for (const u of await usedSubnets(engine)) {
      if (!u.ours) for (const s of subnets) if (cidrsOverlap(u.subnet, s)) foreign.push(`${s} (${u.by})`);
    }
    out.push(
      foreign.length
        ? {
            name: "workshop subnets",
            status: "warn",
            detail: `in use: ${foreign.join(", ")}`,
            fix: "start labs with --lab NAME to use other subnets",
          }
        : { name: "workshop subnets", status: "ok", detail: `${subnets.join(", ")} are free` },
    );
  }

  const go = await goVersion();
  for (const name of ["tailscale", "headscale"] as const) {
    const c = cachedBinaries(name);
    if (c) out.push({ name: `${name} ${versions[name]}`, status: "ok", detail: `cached (${c.via}) in ${c.dir}` });
    else if (go)
      out.push({
        name: `${name} ${versions[name]}`,
        status: "warn",
        detail: `not built yet; go ${go} will build it on first use`,
        fix: "./start.ts setup   (builds it now)",
      });
    else
      out.push({
        name: `${name} ${versions[name]}`,
        status: "warn",
        detail: "not built and Go is not installed: the official release build will be downloaded",
        fix: `install Go >= ${versions.goMinimum}`,
      });
  }

  if (engine) {
    const missing: string[] = [];
    for (const role of Object.keys(IMAGE_ROLES) as ImageRole[]) if (!(await engine.imageExists(imageRef(role)))) missing.push(role);
    const base = await baseImagePresent(engine);
    if (!missing.length)
      out.push({
        name: "images",
        status: "ok",
        detail: `${Object.keys(IMAGE_ROLES).join(", ")} built and current`,
      });
    else if (base || (await has("debootstrap")))
      out.push({
        name: "images",
        status: "warn",
        detail: `to build: ${missing.join(", ")} (on first start)`,
        fix: "./start.ts setup   (builds them now)",
      });
    else
      out.push({
        name: "images",
        status: "missing",
        detail: `${versions.debian.baseImage} absent and debootstrap missing to build it offline`,
        fix: "sudo ./start.ts setup",
      });
  }
  for (const [tool, why, fix] of [
    ["tmux", "the attendee workspace (panes)", "apt-get install tmux"],
    ["openssl", "recipe-3's lab CA and certificate", "apt-get install openssl"],
  ] as const) {
    out.push(
      (await has(tool))
        ? { name: tool, status: "ok", detail: `present (${why})` }
        : {
            name: tool,
            status: tool === "openssl" ? "missing" : "warn",
            detail: `absent: needed for ${why}`,
            fix,
          },
    );
  }
  return out;
}
