import { errorMessage, UserError } from "../errors.ts";
import { listRecipes, loadRecipe } from "../recipe/load.ts";
import { Progress } from "../ui/progress.ts";
import { type FlagSpec, parseArgs } from "./args.ts";
import { asTyped } from "./as-typed.ts";
import { type Command, GLOBAL } from "./command.ts";
import { checkCommand } from "./commands/check.ts";
import { classroomAddCommand } from "./commands/classroom-add.ts";
import { classroomDownCommand } from "./commands/classroom-down.ts";
import { classroomRemoveCommand } from "./commands/classroom-remove.ts";
import { classroomResetCommand } from "./commands/classroom-reset.ts";
import { classroomStatusCommand } from "./commands/classroom-status.ts";
import { classroomUpCommand } from "./commands/classroom-up.ts";
import { cleanCommand } from "./commands/clean.ts";
import { doctorCommand } from "./commands/doctor.ts";
import { execCommand } from "./commands/exec.ts";
import { graphCommand } from "./commands/graph.ts";
import { hintCommand } from "./commands/hint.ts";
import { matrixCommand } from "./commands/matrix.ts";
import { pathsCommand } from "./commands/paths.ts";
import { preflightCommand } from "./commands/preflight.ts";
import { resetCommand } from "./commands/reset.ts";
import { scorecardCommand } from "./commands/scorecard.ts";
import { setCommand } from "./commands/set.ts";
import { setupCommand } from "./commands/setup.ts";
import { shellCommand } from "./commands/shell.ts";
import { solveCommand } from "./commands/solve.ts";
import { allRecipeOptionFlags, recipeOptionFlags, startCommand } from "./commands/start.ts";
import { statusCommand } from "./commands/status.ts";
import { stopCommand } from "./commands/stop.ts";

const commands: Record<string, Command> = Object.fromEntries(
  [
    setupCommand,
    doctorCommand,
    startCommand,
    stopCommand,
    statusCommand,
    execCommand,
    shellCommand,
    checkCommand,
    hintCommand,
    solveCommand,
    resetCommand,
    setCommand,
    pathsCommand,
    matrixCommand,
    graphCommand,
    scorecardCommand,
    preflightCommand,
    classroomUpCommand,
    classroomStatusCommand,
    classroomAddCommand,
    classroomRemoveCommand,
    classroomResetCommand,
    classroomDownCommand,
    cleanCommand,
  ].map((c) => [c.name, c]),
);

/** The second words of the commands named "GROUP SUB" (`classroom up`). */
function subcommands(group: string): string[] {
  return Object.keys(commands)
    .filter((c) => c.startsWith(`${group} `))
    .map((c) => c.slice(group.length + 1));
}

/**
 * The command a command line names and its arguments: `status --json` is "status"; a group's
 * `classroom up --seats 2` is "classroom up". A group alone with --help: no name (its help).
 */
function commandOf(first: string, rest: string[]): [string | undefined, string[]] {
  const subs = subcommands(first);
  if (!subs.length) return [first, rest];
  const sub = rest[0];
  if (sub === "--help" || sub === "-h") return [undefined, []];
  if (!sub || !subs.includes(sub))
    throw new UserError(
      `${sub ? `Unknown ${first} command "${sub}"` : `\`${first}\` needs a command`}: one of ${subs.join(", ")} (./start.ts ${first} --help).`,
      2,
    );
  return [`${first} ${sub}`, rest.slice(1)];
}

function groupHelp(group: string): string {
  const cmds = subcommands(group)
    .map((s) => commands[`${group} ${s}`]!)
    .map((c) => `  ${c.usage.padEnd(58)}${c.summary}`)
    .join("\n");
  return `Usage: ./start.ts ${group} <command> [options]\n\n${cmds}\n\nEach takes --help: ./start.ts ${group} ${subcommands(group)[0]} --help.\n`;
}

function flagLines(flags: FlagSpec[]): string {
  return flags.map((f) => `${`  --${f.name}${f.value ? ` ${f.value}` : ""}`.padEnd(29)} ${f.help}`).join("\n");
}

/** Help for one command, for a recipe (its start with its options), or the overview. */
function help(name?: string): string {
  if (name && listRecipes().includes(name)) {
    const r = loadRecipe(name);
    const c = startCommand;
    return `Usage: ./start.ts ${name} [--no-attach] [--mux tmux|zellij] [--lab NAME]${recipeOptionFlags(name)
      .map((f) => ` [--${f.name} ${f.value}]`)
      .join("")}\n\n${r.title}: ${r.summary.trim()}\n\n${c.details}\n\nOptions:\n${flagLines([
      ...recipeOptionFlags(name),
      ...c.flags,
      ...GLOBAL,
    ])}\n`;
  }
  if (name && subcommands(name).length) return groupHelp(name);
  if (name && commands[name]) {
    const c = commands[name]!;
    return `Usage: ./start.ts ${c.usage}\n\n${c.summary}\n${c.details ? `\n${c.details}\n` : ""}\nOptions:\n${flagLines([...c.flags, ...GLOBAL])}\n`;
  }
  return overview();
}

function overview(): string {
  const recipes = listRecipes()
    .map((r) => {
      try {
        return `  ${r.padEnd(12)}${loadRecipe(r).title}`;
      } catch {
        return `  ${r.padEnd(12)}(invalid recipe.yaml)`;
      }
    })
    .join("\n");
  const cmds = Object.values(commands)
    .filter((c) => c !== startCommand)
    .map((c) => `  ${c.usage.padEnd(58)}${c.summary}`)
    .join("\n");
  return `wg-3-ways: the "WireGuard 3 Ways" workshop as real containers, real WireGuard, real Tailscale and Headscale.

Usage: ./start.ts <recipe> [--no-attach] [--mux tmux|zellij] [--lab NAME] [recipe options]
       ./start.ts <command> [args] [--help]

Recipes (./start.ts --help <recipe> lists a recipe's options):
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
  const verbose = argv.includes("--verbose") || argv.includes("-v") || process.env.WG3_VERBOSE === "1";
  const progress = new Progress(process.stderr, verbose, process.env.WG3_SILENT === "1", (line) => asTyped(line));
  const abort = new AbortController();
  let interrupts = 0;
  let quietInterrupt = false;
  let interruptLine: string | undefined = "Interrupted: cleaning up what this command created (Ctrl-C again to quit at once)...";
  const onSigint = () => {
    interrupts++;
    if (interrupts > 1) process.exit(130);
    if (!quietInterrupt && interruptLine) progress.info(interruptLine);
    abort.abort();
  };
  process.on("SIGINT", onSigint);
  process.on("SIGTERM", onSigint);
  try {
    const [first, ...rest] = argv;
    if (!first || first === "--help" || first === "-h" || first === "help") {
      process.stdout.write(help(rest[0]));
      return 0;
    }
    const isRecipe = listRecipes().includes(first);
    const [name, args] = isRecipe ? ["start", argv] : commandOf(first, rest);
    if (!name) {
      process.stdout.write(help(first));
      return 0;
    }
    const cmd = commands[name];
    if (!cmd || (name === "start" && !isRecipe)) {
      const known = listRecipes();
      throw new UserError(
        `Unknown command or recipe "${first}"; recipes: ${known.join(", ")}; commands: ${[
          ...new Set(Object.keys(commands).map((c) => c.split(" ")[0])),
        ]
          .filter((c) => c !== "start")
          .join(", ")}.`,
        2,
      );
    }
    const flags = isRecipe ? [...cmd.flags, ...allRecipeOptionFlags(), ...GLOBAL] : [...cmd.flags, ...GLOBAL];
    const parsed = parseArgs(args, flags, name);
    if (parsed.flags.help) {
      process.stdout.write(help(isRecipe ? first : name));
      return 0;
    }
    quietInterrupt = Boolean(cmd.endsOnInterrupt && parsed.flags.watch);
    return await cmd.run(parsed, { progress, signal: abort.signal, onInterruptSay: (line) => (interruptLine = line) });
  } catch (err) {
    if (err instanceof UserError) {
      process.stderr.write(`${asTyped(err.message)}\n`);
      if (err.details) process.stderr.write(`${asTyped(err.details.trimEnd())}\n`);
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
