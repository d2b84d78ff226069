import { networkInterfaces } from "node:os";
import { execa } from "execa";
import { installPackages, isRoot, which } from "../engine/ensure.ts";
import { UserError } from "../errors.ts";
import { readPlan } from "../lab/plan.ts";
import type { Progress } from "../ui/progress.ts";
import type { ClassState } from "./state.ts";

/**
 * A seat's containers must not reach the host itself: its lab bridges carry the host's own
 * address (the gateway), where every service the host offers on 0.0.0.0 answers (the
 * classroom server, sshd, the engine's API if on TCP). One nftables table per class, of ours
 * alone, drops whatever comes in from the class's bridges to the host (input hook); traffic
 * between containers on a bridge never passes the input hook, so the labs work as before.
 */
export const FIREWALL_TABLE_PREFIX = "wg3ways_classroom_";

/** The class's table (nftables names: letters, digits, underscores). */
export function firewallTable(className: string): string {
  return `${FIREWALL_TABLE_PREFIX}${className.replace(/-/g, "_")}`;
}

/**
 * One `nft -f` transaction that leaves exactly this table (none when there is no bridge):
 * `add` first, so that the `delete` never fails on a table that is not there.
 */
export function firewallScript(table: string, bridges: string[]): string {
  const lines = [`add table inet ${table}`, `delete table inet ${table}`];
  if (bridges.length)
    lines.push(
      `table inet ${table} {`,
      "  chain input {",
      "    type filter hook input priority filter - 10; policy accept;",
      `    iifname { ${[...new Set(bridges)]
        .sort()
        .map((b) => JSON.stringify(b))
        .join(", ")} } counter drop comment "classroom seats may not reach the host"`,
      "  }",
      "}",
    );
  return `${lines.join("\n")}\n`;
}

/** The host's interface that holds `address` (a lab bridge holds its network's gateway), if any. */
export function interfaceWith(address: string, interfaces = networkInterfaces()): string | undefined {
  for (const [name, addrs] of Object.entries(interfaces)) if (addrs?.some((a) => a.address === address)) return name;
  return undefined;
}

/** The host-side bridges of every seat whose lab is planned (a bridge exists once its containers run). */
export function seatBridges(state: ClassState, interfaces = networkInterfaces()): string[] {
  const out: string[] = [];
  for (const seat of state.seats) {
    const plan = readPlan(seat.lab, state.recipe);
    for (const net of Object.values(plan?.networks ?? {})) {
      const dev = interfaceWith(net.gateway, interfaces);
      if (dev) out.push(dev);
    }
  }
  return out;
}

async function nft(script: string): Promise<void> {
  const r = await execa("nft", ["-f", "-"], { input: script, reject: false, all: true });
  if (r.exitCode !== 0) throw new UserError(`nft -f failed: ${String(r.all).trim().split("\n").slice(-3).join(" ")}`);
}

/** nft, installed with apt-get (Debian's nftables) when missing and we may. */
export async function ensureNft(opts: { yes?: boolean; progress?: Progress }): Promise<void> {
  if (await which("nft")) return;
  if (!isRoot()) throw new UserError("nft is not installed (the classroom's firewall needs it): apt-get install nftables, as root.");
  opts.progress?.info("nft is missing: installing Debian's nftables (the classroom keeps seats off the host with it).");
  await installPackages(opts, ["nftables"]);
  if (!(await which("nft"))) throw new UserError("apt-get installed nftables, but there is still no nft.");
}

let syncing: Promise<unknown> = Promise.resolve();

/**
 * Make the class's table match its seats now: every seat's bridges dropped at the host's
 * input, or no table once no seat is left. Idempotent; touches no other table. One at a time:
 * seats starting side by side must not apply an older view of the bridges after a newer one.
 */
export function syncFirewall(state: ClassState): Promise<string[]> {
  const run = syncing.then(async () => {
    const bridges = seatBridges(state);
    if (!bridges.length && !(await which("nft"))) return bridges;
    await nft(firewallScript(firewallTable(state.name), bridges));
    return bridges;
  });
  syncing = run.catch(() => {});
  return run;
}

/** Remove the class's table (`classroom down`); nothing when there is none. */
export async function removeFirewall(className: string): Promise<void> {
  if (await which("nft")) await nft(firewallScript(firewallTable(className), []));
}

/** Remove every class's table (`./start.ts clean`). */
export async function removeAllFirewalls(): Promise<number> {
  if (!(await which("nft"))) return 0;
  const r = await execa("nft", ["list", "tables"], { reject: false });
  const tables = r.stdout
    .split("\n")
    .map((l) => l.trim().split(/\s+/))
    .filter((w) => w[0] === "table" && w[1] === "inet" && w[2]?.startsWith(FIREWALL_TABLE_PREFIX))
    .map((w) => w[2]!);
  for (const t of tables) await nft(firewallScript(t, []));
  return tables.length;
}
