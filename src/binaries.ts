import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { UserError } from "./errors.ts";
import { cacheDir } from "./paths.ts";
import { type Progress, stepper } from "./ui/progress.ts";
import { versions } from "./versions.ts";

export type BinaryName = keyof typeof GO_PACKAGES;

export interface BinarySet {
  name: BinaryName;
  version: string;
  /** Directory holding the executables. */
  dir: string;
  files: string[];
  /** How the binaries were obtained: "go install", "release download", or the fallback used instead. */
  via: string;
}

const GO_PACKAGES = {
  tailscale: {
    module: "tailscale.com",
    pkgs: ["tailscale.com/cmd/tailscale", "tailscale.com/cmd/tailscaled"],
    files: ["tailscale", "tailscaled"],
  },
  headscale: {
    module: "github.com/juanfont/headscale",
    pkgs: ["github.com/juanfont/headscale/cmd/headscale"],
    files: ["headscale"],
  },
  // Current wireguard-go (TUN segmentation offloads) for the wg-peer image. It has no release
  // builds: without Go the image keeps Debian's older package, which wg-quick then runs.
  "wireguard-go": {
    module: "golang.zx2c4.com/wireguard",
    pkgs: ["golang.zx2c4.com/wireguard"],
    files: ["wireguard-go"],
    /** go install names the binary after the module's last element. */
    builtAs: { wireguard: "wireguard-go" },
    fallback: "Debian's wireguard-go package in the image",
  },
} as const;

type GoPackage = (typeof GO_PACKAGES)[BinaryName];

/** Every pinned binary set, in the order setup builds them. */
export const BINARY_NAMES = Object.keys(GO_PACKAGES) as BinaryName[];

export function binaryDir(name: BinaryName, version = versions[name]): string {
  return join(cacheDir(), "bin", `${name}-${version}-linux-amd64`);
}

export function cachedBinaries(name: BinaryName): BinarySet | undefined {
  const dir = binaryDir(name);
  const spec = GO_PACKAGES[name];
  if (!spec.files.every((f) => existsSync(join(dir, f)))) return undefined;
  const via = existsSync(join(dir, "VIA")) ? readFileSync(join(dir, "VIA"), "utf8").trim() : "go install";
  return { name, version: versions[name], dir, files: [...spec.files], via };
}

export function versionAtLeast(have: string, want: string): boolean {
  const a = have.split(".").map(Number);
  const b = want.split(".").map(Number);
  for (let i = 0; i < 3; i++) {
    if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) > (b[i] ?? 0);
  }
  return true;
}

export async function goVersion(): Promise<string | undefined> {
  const r = await execa("go", ["env", "GOVERSION"], { reject: false });
  return r.exitCode === 0 ? r.stdout.trim().replace(/^go/, "") : undefined;
}

/**
 * Make sure the pinned Tailscale or Headscale binaries are in the cache. Preferred path:
 * `go install pkg@version` (static, CGO off) into a temporary GOBIN, renamed into place only
 * when complete, so an interrupted build never leaves a half-filled cache entry.
 */
export async function ensureBinaries(name: BinaryName, progress?: Progress, signal?: AbortSignal): Promise<BinarySet> {
  const hit = cachedBinaries(name);
  if (hit) return hit;
  const spec: GoPackage = GO_PACKAGES[name];
  const version = versions[name];
  const go = await goVersion();
  const haveGo = go !== undefined && versionAtLeast(go, versions.goMinimum);
  if (!haveGo && "fallback" in spec) {
    progress?.info(`${name} ${version} needs Go ${versions.goMinimum} or newer to build; using ${spec.fallback}.`);
    return { name, version, dir: binaryDir(name), files: [], via: spec.fallback };
  }
  const dir = binaryDir(name);
  const tmp = `${dir}.partial-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const step = stepper(progress);
  try {
    if (haveGo) {
      await step(`go install ${name} ${version} (cold build, a few minutes)`, (note) =>
        goInstall(spec, version, tmp, { name, note, progress, signal }),
      );
      if ("builtAs" in spec) for (const [from, to] of Object.entries(spec.builtAs)) renameSync(join(tmp, from), join(tmp, to));
      writeFileSync(join(tmp, "VIA"), `go install (go ${go})\n`);
    } else {
      await step(`download official ${name} ${version} release`, () => downloadRelease(name, version, tmp));
      writeFileSync(join(tmp, "VIA"), "release download\n");
    }
    for (const f of spec.files) chmodSync(join(tmp, f), 0o755);
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return cachedBinaries(name)!;
}

interface GoRun {
  name: string;
  note: (text: string) => void;
  progress?: Progress;
  signal?: AbortSignal;
}

/**
 * Build the pinned packages into `gobin`. The module is downloaded first (`go mod download`):
 * from an empty module cache, `go install pkg@v` asks the proxy for the module's version list
 * to look for a deprecation notice, and proxy.golang.org answers 403 for headscale's; once the
 * module is in the cache, the install takes it from there.
 */
async function goInstall(spec: GoPackage, version: string, gobin: string, run: GoRun): Promise<void> {
  const env = {
    CGO_ENABLED: "0",
    GOBIN: gobin,
    GOFLAGS: "-buildvcs=false -modcacherw",
    GOOS: "linux",
    GOARCH: "amd64",
    GOPROXY: `file://${versionListProxy(spec.module, version)},${process.env.GOPROXY || "https://proxy.golang.org,direct"}`,
  };
  await goCommand(["mod", "download", `${spec.module}@${version}`], env, spec, version, run);
  await goCommand(["install", "-trimpath", "-ldflags=-s -w", ...spec.pkgs.map((p) => `${p}@${version}`)], env, spec, version, run);
}

async function goCommand(args: string[], env: Record<string, string>, spec: GoPackage, version: string, run: GoRun): Promise<void> {
  const what = `go ${args[0] === "mod" ? "mod download" : "install"} ${spec.module}@${version}`;
  const child = execa("go", args, { reject: false, all: true, cancelSignal: run.signal, env });
  child.all?.on("data", (b: Buffer) => {
    for (const line of b.toString().split("\n").filter(Boolean)) {
      run.note(line);
      run.progress?.detail(line);
    }
  });
  const r = await child;
  if (run.signal?.aborted) {
    throw new UserError(`Interrupted while building ${run.name} ${version}; the cache holds no half-built copy.`, 130);
  }
  if (r.exitCode === 0) return;
  const text = String(r.all ?? "");
  if (/dial tcp|lookup .*no such host|connection refused|i\/o timeout/.test(text)) {
    throw new UserError(`${what} could not reach the Go module proxy; connect to the internet (or set GOPROXY) and retry.`, 1, text);
  }
  throw new UserError(`${what} failed: ${text.trim().split("\n").slice(-3).join(" ")}`, 1, text);
}

/**
 * `go install mod@v` also looks up the module's latest version (for deprecation notices): it
 * asks for `@latest` and, when that is 404, for the version list. proxy.golang.org answers 404
 * and 403 for headscale (measured 2026-11-22), which fails the install. A local file proxy
 * answering only these two questions, with our pinned version, lets everything else go to the
 * real proxy (a comma in GOPROXY falls through on 404, which the file proxy gives for the rest).
 */
export function versionListProxy(module: string, version: string): string {
  const root = join(cacheDir(), "goproxy-lists");
  const dir = join(root, ...module.split("/"));
  mkdirSync(join(dir, "@v"), { recursive: true });
  writeFileSync(join(dir, "@v", "list"), `${version}\n`);
  writeFileSync(join(dir, "@latest"), `${JSON.stringify({ Version: version })}\n`);
  return root;
}

/** Where the official release build of a pinned version is published. */
export function releaseUrl(name: "tailscale" | "headscale", version = versions[name]): string {
  const v = version.replace(/^v/, "");
  return name === "tailscale"
    ? `https://pkgs.tailscale.com/stable/tailscale_${v}_amd64.tgz`
    : `https://github.com/juanfont/headscale/releases/download/v${v}/headscale_${v}_linux_amd64`;
}

/** Second path, for machines without Go: the projects' official release builds. */
async function downloadRelease(name: BinaryName, version: string, into: string): Promise<void> {
  if (name === "wireguard-go") throw new Error("wireguard-go has no release builds"); // ensureBinaries falls back first
  const v = version.replace(/^v/, "");
  const url = releaseUrl(name, version);
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(120_000) });
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name;
    throw new UserError(
      `Go ${versions.goMinimum} or newer is not installed and ${new URL(url).host} is unreachable (${cause}), so ${name} ${version} can be neither built nor downloaded; install Go (https://go.dev/dl) or connect to the internet.`,
    );
  }
  if (!res.ok) throw new UserError(`Downloading ${url} failed with HTTP ${res.status}.`);
  const body = Buffer.from(await res.arrayBuffer());
  if (name === "headscale") {
    writeFileSync(join(into, "headscale"), body);
    return;
  }
  const tgz = join(into, "release.tgz");
  writeFileSync(tgz, body);
  await execa("tar", [
    "-xzf",
    tgz,
    "-C",
    into,
    "--strip-components=1",
    `tailscale_${v}_amd64/tailscale`,
    `tailscale_${v}_amd64/tailscaled`,
  ]);
  rmSync(tgz);
}
