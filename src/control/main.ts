import { runCli } from "./admin-cli.ts";
import { ConfigError, defaultConfigPath, loadConfig } from "./config.ts";
import { ControlServer } from "./server.ts";
import { TailnetError } from "./tailnet.ts";

/**
 * Entry point of the builtin control server's container, bundled into one file:
 *   control.mjs serve [--config FILE]   run the server (and its admin socket)
 *   control.mjs cli ARGS...             the headscale-compatible admin CLI
 */

async function serve(argv: string[]): Promise<void> {
  const i = argv.findIndex((a) => a === "--config" || a === "-c");
  const configPath = i >= 0 ? argv[i + 1]! : defaultConfigPath();
  const config = loadConfig(configPath);
  const log = (m: string) => process.stdout.write(`${new Date().toISOString()} ${m}\n`);
  const server = new ControlServer(config, log);
  await server.start();
  const stop = async (sig: string) => {
    log(`${sig}: shutting down`);
    await server.close();
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    if (cmd === "serve") {
      await serve(rest);
      return -1; // keeps running
    }
    if (cmd === "cli") {
      process.stdout.write(await runCli(rest));
      return 0;
    }
    process.stderr.write("usage: control.mjs serve [--config FILE] | control.mjs cli ARGS...\n");
    return 2;
  } catch (e) {
    if (e instanceof TailnetError || e instanceof ConfigError) {
      process.stderr.write(`Error: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
}

const code = await main(process.argv.slice(2));
if (code >= 0) process.exitCode = code;
