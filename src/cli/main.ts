import { spawnSync } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ensureBinaries } from "../binaries.ts";
import { diagnose } from "../doctor.ts";
import { findEngine } from "../engine/connect.ts";
import { Engine } from "../engine/engine.ts";
import { ensureEngine, installPackages, isRoot } from "../engine/setup.ts";
import { errorMessage, UserError } from "../errors.ts";
import { topologyMermaid, topologySvg } from "../graph/topology.ts";
import { ensureImages, IMAGE_ROLES, type ImageRole } from "../images/build.ts";
import { type ActionContext, checkExercise, runAction } from "../lab/actions.ts";
import { down, nodeOf, runningPlan, status, up } from "../lab/lifecycle.ts";
import { DEFAULT_LAB, type LabPlan, readPlan, scopeOf, validLabName } from "../lab/plan.ts";
import { stateDir } from "../paths.ts";
import { listRecipes, loadRecipe } from "../recipe/load.ts";
import { renderLoose } from "../recipe/template.ts";
import { Progress } from "../ui/progress.ts";
import { chooseMux, closeAllWorkspaces, closeWorkspace, openWorkspace, workspaceOpen } from "../workspace/mux.ts";
import { hasTmux } from "../workspace/tmux.ts";
import { type FlagSpec, parseArgs } from "./args.ts";

const GLOBAL: FlagSpec[] = [
  { name: "help", help: "show help for this command" },
  { name: "verbose", help: "show engine and command output" },
];
const LAB: FlagSpec = {
  name: "lab",
  value: "NAME",
  help: "a separate copy of the lab with prefixed names and other subnets (default: the workshop's names)",
};

interface Command {
  usage: string;
  summary: string;
  details?: string;
  flags: FlagSpec[];
  run(p: ReturnType<typeof parseArgs>, ctx: Ctx): Promise<number>;
}

interface Ctx {
  progress: Progress;
  signal: AbortSignal;
}

function labOf(p: ReturnType<typeof parseArgs>): string {
  return validLabName((p.flags.lab as string | undefined) ?? DEFAULT_LAB);
}

function needRecipe(p: ReturnType<typeof parseArgs>, cmd: string): string {
  const r = p.positionals[0];
  if (!r) throw new UserError(`\`${cmd}\` needs a recipe: one of ${listRecipes().join(", ")}.`, 2);
  loadRecipe(r);
  return r;
}

async function engineFor(ctx: Ctx): Promise<Engine> {
  return ensureEngine({ allowSetup: false, progress: ctx.progress });
}

function out(line = ""): void {
  process.stdout.write(`${line}\n`);
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

const commands: Record<string, Command> = {
  setup: {
    usage: "setup [--yes]",
    summary: "install and start a container engine, build the pinned binaries and the images",
    details:
      "On Debian/Ubuntu as root, when no engine answers: apt-get installs podman, runc, netavark, aardvark-dns,\n" +
      "iptables, debootstrap, tmux, openssl and ca-certificates; writes .state/podman/containers.conf (runc,\n" +
      "cgroupfs, rlimits that work on hybrid-cgroup hosts, netavark networking so lab bridges are isolated) and\n" +
      "starts `podman system service` on /run/wg-3-ways/podman.sock.\n" +
      "Docker Engine is used as is when its socket answers (or DOCKER_HOST is set).\n" +
      "Then it builds Tailscale and Headscale (go install, pinned in versions.json) and every image in images/.",
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
      for (const b of ["tailscale", "headscale"] as const) {
        const set = await ensureBinaries(b, ctx.progress, ctx.signal);
        ctx.progress.info(`${b} ${set.version}: ${set.via}, ${set.dir}`);
      }
      const r = await ensureImages(engine, Object.keys(IMAGE_ROLES) as ImageRole[], ctx.progress, ctx.signal);
      ctx.progress.info(`images: built ${r.built.join(", ") || "none"}, current ${r.reused.join(", ") || "none"}`);
      ctx.progress.info("Ready. Next: ./start.ts doctor, then ./start.ts recipe-0");
      return 0;
    },
  },
  doctor: {
    usage: "doctor",
    summary: "check every prerequisite: ok / missing / how to fix; exit 0 only when a lab can start",
    flags: [],
    async run() {
      const findings = await diagnose();
      const mark = { ok: "ok     ", missing: "MISSING", warn: "warn   " };
      for (const f of findings) {
        out(`${mark[f.status]}  ${f.name}: ${f.detail}`);
        if (f.fix && f.status !== "ok") out(`         fix: ${f.fix}`);
      }
      const bad = findings.filter((f) => f.status === "missing");
      out(bad.length ? `\n${bad.length} missing: a lab cannot start yet.` : "\nA lab can start.");
      return bad.length ? 1 : 0;
    },
  },
  start: {
    usage: "<recipe> [--no-attach] [--mux tmux|zellij] [--lab NAME] [--control headscale|builtin]",
    summary: "start a recipe's lab and open its workspace",
    details:
      "Builds what is missing, creates the networks and containers, runs the recipe's setup and waits\n" +
      "until it is really up. Then opens the workspace, a tmux session wg3-<recipe>: a host shell in\n" +
      "recipes/<recipe>/, and one pane per interactive container. Starting a running lab only re-attaches.\n" +
      "With --no-attach (or without a terminal) the tmux session is still created: tmux attach -t wg3-<recipe>.\n" +
      "Zellij is used when tmux is missing or with --mux zellij; with neither, the shell commands are printed.",
    flags: [
      { name: "no-attach", help: "do not attach to the workspace (CI, scripts); tmux still creates it" },
      { name: "mux", value: "tmux|zellij", help: "which terminal multiplexer opens the workspace (default: tmux, else zellij)" },
      LAB,
      {
        name: "control",
        value: "headscale|builtin",
        help: "recipe-3: which coordination server runs: Headscale (default), or builtin, this repo's own TypeScript control server (src/control/)",
      },
      { name: "yes", help: "install the engine without asking if none is found" },
    ],
    async run(p, ctx) {
      const recipe = p.positionals[0]!;
      const lab = labOf(p);
      const mux = await chooseMux(p.flags.mux as string | undefined);
      const t0 = Date.now();
      const r = await up(recipe, {
        lab,
        options: { control: p.flags.control as string | undefined },
        progress: ctx.progress,
        signal: ctx.signal,
        yes: Boolean(p.flags.yes),
      });
      const labText = lab === DEFAULT_LAB ? "" : ` --lab ${lab}`;
      if (r.alreadyRunning) ctx.progress.info(`${recipe} is already running${labText ? ` in lab ${lab}` : ""}; nothing to do.`);
      else ctx.progress.info(`${recipe} is up in ${((Date.now() - t0) / 1000).toFixed(1)}s: ${r.recipe.title}`);
      const rows = [["node", "container", "addresses"]];
      for (const n of Object.values(r.plan.nodes))
        rows.push([
          n.key,
          n.container,
          Object.entries(n.ip)
            .map(([k, v]) => `${v} (${k})`)
            .join(", "),
        ]);
      ctx.progress.info(table(rows));
      ctx.progress.info(
        `\nNext: follow labs/${recipe}.md; ./start.ts check ${recipe}${labText} shows your progress; ./start.ts stop ${recipe}${labText} ends it.`,
      );
      const attachNow = !p.flags["no-attach"] && Boolean(process.stdout.isTTY && process.stdin.isTTY);
      await openWorkspace(r.engine, r.plan, { choice: mux, attach: attachNow, say: (l) => ctx.progress.info(l) });
      return 0;
    },
  },
  stop: {
    usage: "stop <recipe> [--lab NAME]",
    summary: "remove a lab's containers, networks, state and tmux session",
    flags: [LAB],
    async run(p, ctx) {
      const recipe = needRecipe(p, "stop");
      const lab = labOf(p);
      const engine = await engineFor(ctx);
      const open = await workspaceOpen(lab, recipe);
      const r = await ctx.progress.step(`stop ${recipe}${lab === DEFAULT_LAB ? "" : ` (lab ${lab})`}`, () => down(engine, recipe, lab));
      if (!r.removed.containers && !r.removed.networks && !open) ctx.progress.info(`${recipe} is not running; nothing to stop.`);
      else ctx.progress.info(`removed ${r.removed.containers} containers and ${r.removed.networks} networks.`);
      // Last: typed in the workspace's host pane, this ends the very shell running it.
      await closeWorkspace(lab, recipe);
      return 0;
    },
  },
  status: {
    usage: "status [<recipe>] [--lab NAME] [--json]",
    summary: "what runs: labs, nodes, container names, addresses, state",
    flags: [LAB, { name: "json", help: "machine-readable output" }],
    async run(p, ctx) {
      const recipe = p.positionals[0];
      if (recipe) loadRecipe(recipe);
      const engine = await engineFor(ctx);
      const labs = await status(engine, recipe, p.flags.lab as string | undefined);
      if (p.flags.json) {
        out(JSON.stringify({ engine: { kind: engine.kind, version: engine.version, host: engine.dockerHost }, labs }, null, 2));
        return 0;
      }
      if (!labs.length) {
        out(recipe ? `${recipe} is not running.` : "No lab is running.");
        return 0;
      }
      for (const l of labs) {
        const opts = Object.entries(l.options)
          .map(([k, v]) => ` --${k} ${v}`)
          .join("");
        out(`${l.recipe}${l.lab === DEFAULT_LAB ? "" : ` (lab ${l.lab})`}${opts}`);
        const rows = [["  node", "container", "hostname", "state", "addresses"]];
        for (const n of l.nodes)
          rows.push([
            `  ${n.node}`,
            n.container,
            n.hostname,
            n.state,
            Object.entries(n.addresses)
              .map(([k, v]) => `${v} (${k})`)
              .join(", "),
          ]);
        out(table(rows));
      }
      return 0;
    },
  },
  exec: {
    usage: "exec <recipe> <node> [--lab NAME] -- CMD...",
    summary: "run a command in a node's container (exit code passes through)",
    flags: [LAB],
    async run(p, ctx) {
      const recipe = needRecipe(p, "exec");
      const nodeName = p.positionals[1];
      if (!p.rest.length) throw new UserError("exec needs a command after --, e.g. ./start.ts exec recipe-0 peer-1 -- wg show", 2);
      const engine = await engineFor(ctx);
      const plan = await runningPlan(engine, recipe, labOf(p));
      if (!nodeName) throw new UserError(`exec needs a node: one of ${Object.keys(plan.nodes).join(", ")}.`, 2);
      const node = nodeOf(plan, nodeName);
      const r = await engine.exec(node.container, p.rest);
      process.stdout.write(r.stdout);
      process.stderr.write(r.stderr);
      return r.exitCode;
    },
  },
  shell: {
    usage: "shell <recipe> <node> [--lab NAME]",
    summary: "an interactive shell in a node's container",
    flags: [LAB],
    async run(p, ctx) {
      const recipe = needRecipe(p, "shell");
      const engine = await engineFor(ctx);
      const plan = await runningPlan(engine, recipe, labOf(p));
      const nodeName = p.positionals[1];
      if (!nodeName) throw new UserError(`shell needs a node: one of ${Object.keys(plan.nodes).join(", ")}.`, 2);
      const node = nodeOf(plan, nodeName);
      const [cli, ...args] = engine.cliArgs();
      const r = spawnSync(cli!, [...args, "exec", "-it", node.container, "bash"], {
        stdio: "inherit",
      });
      return r.status ?? 1;
    },
  },
  check: {
    usage: "check <recipe> [--lab NAME]",
    summary: "the exercises of a recipe: pass / not yet, with a hint; exit 0 only when all pass",
    flags: [LAB],
    async run(p, ctx) {
      const recipe = needRecipe(p, "check");
      const engine = await engineFor(ctx);
      const plan = await runningPlan(engine, recipe, labOf(p));
      const r = loadRecipe(recipe);
      const actx: ActionContext = { engine, recipe: r, plan, captured: {}, signal: ctx.signal };
      const open = await engine.hostRoutableNetworks({ lab: plan.lab, recipe });
      if (open.length)
        ctx.progress.info(
          `warning: this lab was started by an older version and the host can route into ${open.join(", ")}, so a "not reachable" check can lie; stop and start it again.`,
        );
      let failed = 0;
      const scope = scopeOf(plan);
      for (const ex of r.exercises) {
        const res = await checkExercise(actx, ex);
        if (res.ok) out(`pass     ${ex.id}: ${renderLoose(ex.title, scope)}`);
        else {
          failed++;
          out(`not yet  ${ex.id}: ${renderLoose(ex.title, scope)}\n         hint: ${renderLoose(ex.hint, scope)}`);
          if (ctx.progress.verbose && res.detail) out(`         seen: ${res.detail}`);
        }
      }
      out(failed ? `\n${failed} of ${r.exercises.length} not done yet.` : `\nAll ${r.exercises.length} exercises pass.`);
      const labText = labOf(p) === DEFAULT_LAB ? "" : ` --lab ${labOf(p)}`;
      const next = listRecipes()[listRecipes().indexOf(recipe) + 1];
      if (failed) out(`Stuck? ./start.ts solve ${recipe} <exercise>${labText} applies the reference solution of one.`);
      else out(`Next: ./start.ts stop ${recipe}${labText}${next ? `, then ./start.ts ${next} (labs/${next}.md)` : ""}.`);
      return failed ? 1 : 0;
    },
  },
  solve: {
    usage: "solve <recipe> [exercise] [--lab NAME]",
    summary: "apply the reference solution (all exercises, or one)",
    flags: [LAB],
    async run(p, ctx) {
      const recipe = needRecipe(p, "solve");
      const engine = await engineFor(ctx);
      const plan = await runningPlan(engine, recipe, labOf(p));
      const r = loadRecipe(recipe);
      const which = p.positionals[1];
      const exercises = which ? r.exercises.filter((e) => e.id === which) : r.exercises;
      if (which && !exercises.length)
        throw new UserError(`${recipe} has no exercise "${which}"; its exercises are: ${r.exercises.map((e) => e.id).join(", ")}.`, 2);
      const actx: ActionContext = {
        engine,
        recipe: r,
        plan,
        captured: {},
        progress: ctx.progress,
        signal: ctx.signal,
      };
      for (const ex of exercises) {
        if (!ex.solve.length) continue;
        await ctx.progress.step(`solve ${ex.id}: ${ex.title}`, async () => {
          for (const a of ex.solve) await runAction(actx, a);
        });
      }
      return 0;
    },
  },
  graph: {
    usage: "graph <recipe> [--mermaid] [--out FILE] [--lab NAME]",
    summary: "a picture of the topology (SVG, or mermaid text); marks what is up when the lab runs",
    flags: [
      LAB,
      { name: "mermaid", help: "print mermaid text instead of SVG" },
      { name: "out", value: "FILE", help: "write to FILE instead of stdout" },
    ],
    async run(p) {
      const recipe = needRecipe(p, "graph");
      const r = loadRecipe(recipe);
      const lab = labOf(p);
      let plan: LabPlan | undefined;
      let states: Record<string, string> | undefined;
      // Mark what is up when an engine answers and the lab runs; otherwise draw the plan.
      const found = await findEngine();
      if (found.live) {
        const engine = new Engine(found.live.endpoint.dockerHost, found.live.kind!, found.live.version ?? "?");
        const running = (await status(engine, recipe, lab))[0];
        if (running) {
          plan = readPlan(lab, recipe);
          states = Object.fromEntries(running.nodes.map((n) => [n.node, n.state]));
        }
      }
      const text = p.flags.mermaid ? topologyMermaid(r, plan, states) : topologySvg(r, plan, states);
      if (p.flags.out) writeFileSync(p.flags.out as string, text);
      else process.stdout.write(text);
      return 0;
    },
  },
  clean: {
    usage: "clean [--all]",
    summary: "remove everything the harness made (found by labels): labs, tmux sessions, state",
    flags: [{ name: "all", help: "also remove the images and the cached Go binaries" }],
    async run(p, ctx) {
      const engine = await engineFor(ctx);
      await closeAllWorkspaces();
      const r = await engine.removeLabelled();
      rmSync(join(stateDir(), "labs"), { recursive: true, force: true });
      let images = 0;
      if (p.flags.all) {
        const list = await engine.docker.listImages({
          filters: JSON.stringify({ label: ["wg3ways.project=wg-3-ways"] }),
        });
        for (const img of list)
          if (
            await engine.docker
              .getImage(img.Id)
              .remove({ force: true })
              .then(
                () => true,
                () => false,
              )
          )
            images++;
      }
      out(`removed ${r.containers} containers, ${r.networks} networks, ${r.volumes} volumes${p.flags.all ? `, ${images} images` : ""}.`);
      return 0;
    },
  },
};

function help(name?: string): string {
  if (name && commands[name]) {
    const c = commands[name]!;
    const flags = [...c.flags, ...GLOBAL].map((f) => `  --${f.name}${f.value ? ` ${f.value}` : ""}`.padEnd(30) + f.help).join("\n");
    return `Usage: ./start.ts ${c.usage}\n\n${c.summary}\n${c.details ? `\n${c.details}\n` : ""}\nOptions:\n${flags}\n`;
  }
  const recipes = listRecipes()
    .map((r) => {
      try {
        return `  ${r.padEnd(12)}${loadRecipe(r).title}`;
      } catch {
        return `  ${r.padEnd(12)}(invalid recipe.yaml)`;
      }
    })
    .join("\n");
  const cmds = Object.entries(commands)
    .filter(([k]) => k !== "start")
    .map(([, c]) => `  ${c.usage.padEnd(58)}${c.summary}`)
    .join("\n");
  return `wg-3-ways: the "WireGuard 3 Ways" workshop as real containers, real WireGuard, real Tailscale and Headscale.

Usage: ./start.ts <recipe> [--no-attach] [--mux tmux|zellij] [--lab NAME] [--control headscale|builtin]
       ./start.ts <command> [args] [--help]

Recipes:
${recipes}

Commands:
${cmds}

Every command takes --help. Lab guides: labs/<recipe>.md.
`;
}

/**
 * A reader that stops early (`| head`, `| grep -q`) closes our output: stop writing to it and
 * let the command end with its own exit code, instead of dying on EPIPE with a stack trace.
 */
function quietWhenOutputCloses(stream: NodeJS.WriteStream): void {
  stream.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code !== "EPIPE" && err.code !== "ERR_STREAM_DESTROYED") throw err;
    stream.write = (() => true) as typeof stream.write;
  });
}

export async function main(argv: string[]): Promise<number> {
  quietWhenOutputCloses(process.stdout);
  quietWhenOutputCloses(process.stderr);
  const progress = new Progress(process.stderr, argv.includes("--verbose") || argv.includes("-v") || process.env.WG3_VERBOSE === "1");
  const abort = new AbortController();
  let interrupts = 0;
  const onSigint = () => {
    interrupts++;
    if (interrupts > 1) process.exit(130);
    progress.info("Interrupted: cleaning up what this command created (Ctrl-C again to quit at once)...");
    abort.abort();
  };
  process.on("SIGINT", onSigint);
  process.on("SIGTERM", onSigint);
  try {
    const [first, ...rest] = argv;
    if (!first || first === "--help" || first === "-h" || first === "help") {
      process.stdout.write(help(rest[0]));
      return first ? 0 : 0;
    }
    const isRecipe = listRecipes().includes(first);
    const name = isRecipe ? "start" : first;
    const cmd = commands[name];
    if (!cmd || (name === "start" && !isRecipe)) {
      const known = listRecipes();
      throw new UserError(
        `Unknown command or recipe "${first}"; recipes: ${known.join(", ")}; commands: ${Object.keys(commands)
          .filter((c) => c !== "start")
          .join(", ")}.`,
        2,
      );
    }
    const parsed = parseArgs(isRecipe ? argv : rest, [...cmd.flags, ...GLOBAL], name);
    if (parsed.flags.help) {
      process.stdout.write(help(name));
      return 0;
    }
    return await cmd.run(parsed, { progress, signal: abort.signal });
  } catch (err) {
    if (err instanceof UserError) {
      process.stderr.write(`${err.message}\n`);
      if (err.details) process.stderr.write(`${err.details.trimEnd()}\n`);
      return abort.signal.aborted ? 130 : err.exitCode;
    }
    process.stderr.write(`Unexpected error: ${errorMessage(err)}\n`);
    if (progress.verbose && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    return abort.signal.aborted ? 130 : 1;
  } finally {
    process.off("SIGINT", onSigint);
    process.off("SIGTERM", onSigint);
  }
}
