#!/usr/bin/env node
// Replays README.md's quickstart on as clean a slate as one machine allows, printing each
// phase's time: empty harness cache, empty Go module and build caches (fresh folders named
// through WG3_CACHE_DIR, GOMODCACHE and GOCACHE, so your own caches are left alone), no lab
// running, optionally no podman at all (--purge-engine), then
//   npm install && ./start.ts recipe-3 --no-attach     (the first README command)
//   npm test                                           (the second, with that lab still up)
// and checks what a newcomer would notice: npm warnings, a dirty clone, a lab that the tests
// stopped or changed. Usage: node scripts/fresh-machine.mjs [--purge-engine] [--keep-caches]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { $, argv, chalk } from "zx";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
$.cwd = ROOT;
$.verbose = false;
$.nothrow = true;

if (argv.help) {
  console.log("node scripts/fresh-machine.mjs [--purge-engine] [--keep-caches]\n\n" + "See the comment at the top of this file.");
  process.exit(0);
}

const slate = mkdtempSync(join(tmpdir(), "wg3-fresh-"));
const env = {
  ...process.env,
  WG3_CACHE_DIR: join(slate, "harness-cache"),
  GOMODCACHE: join(slate, "gomod"),
  GOCACHE: join(slate, "gobuild"),
  GOFLAGS: "-modcacherw",
};
const phases = [];
let failed = false;

async function phase(name, fn) {
  const t0 = Date.now();
  process.stderr.write(chalk.cyan(`== ${name}\n`));
  let ok = true;
  try {
    ok = (await fn()) !== false;
  } catch (e) {
    ok = false;
    process.stderr.write(`${e.message ?? e}\n`);
  }
  const s = (Date.now() - t0) / 1000;
  phases.push({ name, s, ok });
  process.stderr.write(`${ok ? chalk.green("ok") : chalk.red("FAILED")} ${name} (${s.toFixed(1)} s)\n`);
  if (!ok) failed = true;
  return ok;
}

/** Run a command with our environment, echo its output, and say whether it exited 0. */
async function run(cmd, args) {
  // quiet: zx would echo the output itself; we pipe it once, as it comes.
  const p = $({ env, stdio: ["ignore", "pipe", "pipe"], quiet: true })`${cmd} ${args}`;
  p.stdout.pipe(process.stdout);
  p.stderr.pipe(process.stderr);
  const r = await p;
  return { ok: r.exitCode === 0, text: `${r.stdout}${r.stderr}` };
}

async function defaultLab() {
  const status = await $({ env })`./start.ts status recipe-3 --lab default --json`;
  const check = await $({ env })`./start.ts check recipe-3`;
  const nodes = JSON.parse(status.stdout).labs.flatMap((l) => l.nodes.map((n) => `${n.container} ${n.id} ${n.state} ${n.startedAt}`));
  return { status: nodes.join("\n"), check: check.stdout, code: check.exitCode };
}

const labs = await $({ env })`./start.ts status --json`;
if (labs.exitCode === 0 && JSON.parse(labs.stdout).labs.length) {
  console.error("A lab is running; a fresh machine has none. Stop it first (./start.ts status lists them).");
  process.exit(1);
}

if (argv["purge-engine"]) {
  await phase("remove podman and our images (as on a machine that never had them)", async () => {
    await $`./start.ts clean --all`;
    await $`pkill -f ${"podman system service --time=0 unix:///run/wg-3-ways/podman.sock"}`;
    const r = await $`apt-get purge -y -q podman netavark aardvark-dns`;
    await $`umount /var/lib/containers/storage/overlay`.nothrow();
    await $`rm -rf /var/lib/containers/storage /run/wg-3-ways`;
    return r.exitCode === 0;
  });
} else {
  await phase("remove our images (the engine stays)", async () => (await $`./start.ts clean --all`).exitCode === 0);
}

await phase("npm install (quiet, leaves the clone clean)", async () => {
  rmSync(join(ROOT, "node_modules"), { recursive: true, force: true });
  const r = await run("npm", ["install"]);
  const warnings = r.text.split("\n").filter((l) => /npm warn/i.test(l));
  const dirty = (await $`git status --porcelain`).stdout.trim();
  if (warnings.length) console.error(`npm printed warnings:\n${warnings.join("\n")}`);
  if (dirty) console.error(`the clone is dirty after npm install:\n${dirty}`);
  return r.ok && !warnings.length && !dirty;
});

const up = await phase("./start.ts recipe-3 --no-attach (first run: setup, cold builds, images, lab)", async () => {
  return (await run("./start.ts", ["recipe-3", "--no-attach"])).ok;
});

if (up) {
  const before = await defaultLab();
  await phase("npm test (with the recipe-3 lab still up)", async () => (await run("npm", ["test"])).ok);
  await phase("the recipe-3 lab is still up, unchanged", async () => {
    const after = await defaultLab();
    const same = after.status === before.status && after.check === before.check && after.code === before.code;
    if (!same) console.error(`before:\n${before.status}\n${before.check}\nafter:\n${after.status}\n${after.check}`);
    return same;
  });
}

console.log("\nphase                                                                        seconds");
for (const p of phases) console.log(`${p.ok ? "ok    " : "FAILED"} ${p.name.padEnd(72)} ${p.s.toFixed(1).padStart(7)}`);
if (!argv["keep-caches"]) {
  await $`chmod -R u+w ${slate}`;
  rmSync(slate, { recursive: true, force: true });
} else console.log(`caches kept in ${slate}`);
process.exit(failed ? 1 : 0);
