import { existsSync } from "node:fs";
import { execa } from "execa";
import { cachedBinaries, goVersion, releaseUrl, versionAtLeast } from "./binaries.ts";
import { describeNoEngine, findEngine, type Probe } from "./engine/connect.ts";
import { Engine } from "./engine/engine.ts";
import { hostDevicePath, missingDeviceSentence, TUN } from "./engine/preflight.ts";
import { usedSubnets } from "./engine/subnets.ts";
import { baseImagePresent } from "./images/base-image.ts";
import { IMAGE_ROLES, type ImageRole, imageRef } from "./images/build.ts";
import { QDISCS, type Qdisc, qdiscProbe } from "./lab/impairments.ts";
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
export async function prerequisites(): Promise<Finding[]> {
  const found = await findEngine();
  const engine = found.live ? Engine.of(found.live) : undefined;
  const out: Finding[] = engine ? await engineFindings(engine, found.live!.endpoint.source) : [await noEngineFinding(found.probes)];
  out.push(tunFinding(), await wireguardFinding());
  if (engine) out.push(await subnetFinding(engine));
  for (const name of ["tailscale", "headscale"] as const) out.push(await binaryFinding(name));
  if (engine) out.push(await imagesFinding(engine), await impairmentsFinding(engine));
  out.push(...(await toolFindings()));
  return out;
}

async function engineFindings(engine: Engine, source: string): Promise<Finding[]> {
  const out: Finding[] = [
    { name: "container engine", status: "ok", detail: `${engine.kind} ${engine.version} at ${engine.dockerHost} (${source})` },
    await runtimeFinding(engine),
  ];
  if (engine.kind === "podman") out.push(await networkBackendFinding(engine));
  out.push(await labIsolationFinding(engine));
  return out;
}

async function noEngineFinding(probes: Probe[]): Promise<Finding> {
  return {
    name: "container engine",
    status: "missing",
    detail: describeNoEngine(probes),
    fix: (await has("podman"))
      ? "sudo ./start.ts setup   (starts a podman API service)"
      : "sudo ./start.ts setup   (installs podman + runc from your distribution)",
  };
}

function tunFinding(): Finding {
  if (existsSync(hostDevicePath(TUN))) return { name: TUN, status: "ok", detail: "present (WireGuard and tailscaled need it)" };
  return {
    name: TUN,
    status: "missing",
    detail: missingDeviceSentence(TUN),
    fix: "sudo modprobe tun (or enable TUN in your VM/container host)",
  };
}

/** Which WireGuard the recipes' wg-quick will use: the kernel's, or which wireguard-go. */
async function wireguardFinding(): Promise<Finding> {
  if (existsSync("/sys/module/wireguard")) return { name: "WireGuard", status: "ok", detail: "kernel module loaded: wg-quick uses it" };
  const version = versions["wireguard-go"];
  const built = cachedBinaries("wireguard-go");
  const go = await goVersion();
  const userspace = built
    ? `wireguard-go ${version} (${built.via})`
    : go !== undefined && versionAtLeast(go, versions.goMinimum)
      ? `wireguard-go ${version}, which go ${go} builds on first use`
      : `Debian's older wireguard-go (no Go ${versions.goMinimum} to build the pinned ${version}; slower)`;
  return { name: "WireGuard", status: "ok", detail: `no kernel module: wg-quick falls back to ${userspace}; same lessons, slower` };
}

/** Subnets the default labs need: our own labs holding them is fine (that is what stop is for). */
async function subnetFinding(engine: Engine): Promise<Finding> {
  const recipes = listRecipes().flatMap((r) => {
    try {
      return [loadRecipe(r)];
    } catch {
      return [];
    }
  });
  const subnets = [...new Set(recipes.flatMap((r) => Object.values(r.networks).map((n) => n.subnet)))];
  const foreign: string[] = [];
  let oursHold = 0;
  for (const u of await usedSubnets(engine)) {
    for (const s of subnets) {
      if (!cidrsOverlap(u.subnet, s)) continue;
      if (u.ours) oursHold++;
      else foreign.push(`${s} (${u.by})`);
    }
  }
  if (!foreign.length) {
    // Our own labs holding them is no problem: only another program's network would clash.
    const held = oursHold ? "; some are held by this harness's own labs" : "";
    return { name: "workshop subnets", status: "ok", detail: `no other program uses ${subnets.join(", ")}${held}` };
  }
  return {
    name: "workshop subnets",
    status: "warn",
    detail: `in use: ${foreign.join(", ")}`,
    fix: "start labs with --lab NAME to use other subnets",
  };
}

/** Binaries only recipe-3 needs: missing ones are a warning, since recipes 0-2 still start. */
async function binaryFinding(name: "tailscale" | "headscale"): Promise<Finding> {
  const label = `${name} ${versions[name]}`;
  const c = cachedBinaries(name);
  if (c) return { name: label, status: "ok", detail: `cached (${c.via}) in ${c.dir}` };
  const go = await goVersion();
  if (go !== undefined && versionAtLeast(go, versions.goMinimum)) {
    return {
      name: label,
      status: "warn",
      detail: `not built yet; go ${go} will build it on first use`,
      fix: "./start.ts setup   (builds it now)",
    };
  }
  const goText = go ? `Go ${go} is older than ${versions.goMinimum}` : "Go is not installed";
  const host = new URL(releaseUrl(name)).host;
  const reachable = await fetch(releaseUrl(name), { method: "HEAD", redirect: "manual", signal: AbortSignal.timeout(5000) }).then(
    () => true,
    () => false,
  );
  return {
    name: label,
    status: "warn",
    detail: reachable
      ? `not built and ${goText}: the official release build will be downloaded from ${host}`
      : `not built, ${goText} and ${host} is unreachable: recipe-3 cannot start`,
    fix: `install Go >= ${versions.goMinimum}${reachable ? "" : " (or connect to the internet)"}`,
  };
}

async function imagesFinding(engine: Engine): Promise<Finding> {
  const missing: string[] = [];
  for (const role of Object.keys(IMAGE_ROLES) as ImageRole[]) if (!(await engine.imageExists(imageRef(role)))) missing.push(role);
  if (!missing.length) return { name: "images", status: "ok", detail: `${Object.keys(IMAGE_ROLES).join(", ")} built and current` };
  if ((await baseImagePresent(engine)) || (await has("debootstrap")))
    return {
      name: "images",
      status: "warn",
      detail: `to build: ${missing.join(", ")} (on first start)`,
      fix: "./start.ts setup   (builds them now)",
    };
  return {
    name: "images",
    status: "missing",
    detail: `${versions.debian.baseImage} absent and debootstrap missing to build it offline`,
    fix: "sudo ./start.ts setup",
  };
}

async function toolFindings(): Promise<Finding[]> {
  const tools = [
    ["tmux", "the attendee workspace (panes)", "apt-get install tmux"],
    ["openssl", "recipe-3's lab CA and certificate", "apt-get install openssl"],
  ] as const;
  const out: Finding[] = [];
  for (const [tool, why, fix] of tools) {
    if (await has(tool)) out.push({ name: tool, status: "ok", detail: `present (${why})` });
    else out.push({ name: tool, status: tool === "openssl" ? "missing" : "warn", detail: `absent: needed for ${why}`, fix });
  }
  return out;
}

/**
 * The engine's runtime, proved by running one throwaway container (labelled, removed at once):
 * an engine can answer its API and still fail every container (crun on hybrid cgroups, refused
 * rlimits), and then no lab can start.
 */
async function runtimeFinding(engine: Engine): Promise<Finding> {
  const info = await engine.runtimeInfo();
  const runtime = `${info.runtime} (cgroups v${info.cgroupVersion})`;
  let image: string | undefined;
  for (const ref of [imageRef("base"), versions.debian.baseImage]) {
    if (await engine.imageExists(ref)) {
      image = ref;
      break;
    }
  }
  if (!image) return { name: "OCI runtime", status: "ok", detail: `${runtime}; not tried yet (no image to try it with)` };
  try {
    const { exitCode: code } = await engine.runOnce(image, ["true"]);
    if (code !== 0) throw new Error(`a test container exited ${code}`);
    return { name: "OCI runtime", status: "ok", detail: `${runtime}; a test container ran` };
  } catch (err) {
    const why = String((err as Error).message ?? err)
      .split("\n")[0]!
      .slice(0, 300);
    return {
      name: "OCI runtime",
      status: "missing",
      detail: `${runtime} cannot run a container: ${why}`,
      fix: "sudo ./start.ts setup   (its podman service uses runc with settings that work on this host)",
    };
  }
}

/** Running labs whose networks the host can route into (started by an older version). */
async function labIsolationFinding(engine: Engine): Promise<Finding> {
  const open = await engine.hostRoutableNetworks();
  if (!open.length) return { name: "lab isolation", status: "ok", detail: "no running lab's network is routable by the host" };
  return {
    name: "lab isolation",
    status: "warn",
    detail: `the host can route into ${open.join(", ")}: another lab's stop may open them to each other`,
    fix: "stop and start those labs again (./start.ts stop RECIPE, then ./start.ts RECIPE): new networks are internal",
  };
}

/** podman's network backend: netavark isolates lab bridges from each other; CNI does not. */
async function networkBackendFinding(engine: Engine): Promise<Finding> {
  const r = await execa("podman", ["--remote", "--url", engine.dockerHost, "info", "--format", "{{.Host.NetworkBackend}}"], {
    reject: false,
    timeout: 15_000,
  });
  const backend = r.stdout.trim();
  if (backend === "netavark") return { name: "podman network backend", status: "ok", detail: "netavark (isolated bridges)" };
  return {
    name: "podman network backend",
    status: "missing",
    detail: backend
      ? `${backend}: its bridges are not isolated from each other, so a lab's "home" LAN would be reachable around the VPN`
      : `could not ask podman (${(r.stderr || r.stdout).trim().split("\n").pop()})`,
    fix: "sudo ./start.ts setup   (installs netavark + aardvark-dns and restarts the podman service on them)",
  };
}

/**
 * Which network impairments (recipe-4's loss-*, rate-*, latency-* options) the engine host's
 * kernel supports, probed in one throwaway container with NET_ADMIN on its own loopback: loss
 * is an nftables `numgen random` rule, rate limits need the tbf qdisc, latency needs netem.
 */
async function impairmentsFinding(engine: Engine): Promise<Finding> {
  const name = "network impairments";
  if (!(await engine.imageExists(imageRef("base"))))
    return { name, status: "ok", detail: "not probed yet (no base image to probe with; ./start.ts setup builds it)" };
  const loss = "nft add table ip p && nft add chain ip p c && nft add rule ip p c numgen random mod 100 '<' 5 drop";
  const probes: [string, string][] = [
    ["loss (nftables numgen)", loss],
    ...Object.keys(QDISCS).map((q): [string, string] => [`${QDISCS[q as Qdisc].gives} (${q})`, qdiscProbe(q as Qdisc)]),
  ];
  const script = probes
    .map(([label, cmd]) => `if ${cmd} >/dev/null 2>&1; then echo "yes ${label}"; else echo "no ${label}"; fi`)
    .join("; ");
  const r = await engine.runOnce(imageRef("base"), ["sh", "-c", script], { entrypoint: [], capAdd: ["NET_ADMIN"] }).catch((e: Error) => ({
    exitCode: -1,
    output: e.message,
  }));
  const lines = r.output.split("\n").filter((l) => /^(yes|no) /.test(l));
  if (lines.length !== probes.length) return { name, status: "warn", detail: `could not probe: ${r.output.trim().slice(0, 200)}` };
  const yes = lines.filter((l) => l.startsWith("yes ")).map((l) => l.slice(4));
  const no = lines.filter((l) => l.startsWith("no ")).map((l) => l.slice(3));
  const missing = Object.entries(QDISCS)
    .filter(([q]) => no.some((l) => l.includes(`(${q})`)))
    .map(([, v]) => v.config);
  return {
    name,
    status: "ok",
    detail: `supported: ${yes.join(", ") || "none"}${no.length ? `; not on this kernel: ${no.join(", ")} (${missing.join(", ")} not set)` : ""}`,
  };
}
