import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TailscaleInContainer } from "../../src/nodes/tailscale.ts";
import { eventually } from "./eventually.ts";
import { LabHandle } from "./lab-handle.ts";
import { testLabName } from "./labs.ts";
import { startTs } from "./start-ts.ts";
import { TIMEOUT } from "./timeouts.ts";

/** Every preflight check passing: the healthy server, whichever layout and control server. */
export const HEALTHY = { dns: "ok", https: "ok", http: "ok", tls: "ok", key: "ok", ts2021: "ok", server_url: "ok", derp: "ok", stun: "ok" };

/** A going-live lab of a test's own, with what its tests keep asking for. */
export interface GoingLive {
  lab: LabHandle;
  /** The roaming client, out on the internet network as the attendee's laptop. */
  roaming: TailscaleInContainer;
  /** The server's DNS name (vars.serverName). */
  name: string;
  vpsIp: string;
  /** This run's pebble root, in a file on this host (for preflight's --ca). */
  pebbleRoot: string;
  tmp: string;
}

export async function startGoingLive(tag: string, options: Record<string, string> = {}): Promise<GoingLive> {
  const tmp = mkdtempSync(join(tmpdir(), `wg3-${tag}-`));
  const lab = await LabHandle.start("going-live", { lab: testLabName(tag), options });
  const roaming = lab.tailscale("ts-client-roaming");
  const pebbleRoot = join(tmp, "pebble-root.pem");
  writeFileSync(pebbleRoot, (await roaming.sh("cat /usr/local/share/ca-certificates/pebble-root.crt")).stdout);
  return { lab, roaming, name: String(lab.recipe.vars.serverName), vpsIp: lab.ip("vps", "internet"), pebbleRoot, tmp };
}

export async function stopGoingLive(g: GoingLive | undefined): Promise<void> {
  if (!g) return;
  await g.lab.stop();
  rmSync(g.tmp, { recursive: true, force: true });
}

export interface PreflightCheck {
  check: string;
  status: string;
  detail: string;
  because?: string;
}

/** `./start.ts preflight --json` from this host, asking the lab's registrar and trusting `trust` (this run's pebble root). */
export async function preflight(
  g: GoingLive,
  trust = ["--ca", g.pebbleRoot],
): Promise<{ code: number | null; status: Record<string, string>; checks: PreflightCheck[] }> {
  const r = await startTs(["preflight", `https://${g.name}`, "--dns", g.lab.ip("registrar", "internet"), ...trust, "--json"]);
  const checks = JSON.parse(r.stdout) as PreflightCheck[];
  return { code: r.code, status: Object.fromEntries(checks.map((c) => [c.check, c.status])), checks };
}

/** What roaming's nc -zv says about a TCP port of the VPS: a connection, a refusal, or silence. */
export async function tcpProbe(g: GoingLive, port: number): Promise<"open" | "refused" | "filtered"> {
  const out = (await g.roaming.sh(`nc -zv -w 3 ${g.vpsIp} ${port} 2>&1`)).stdout;
  return /succeeded/.test(out) ? "open" : /refused/.test(out) ? "refused" : "filtered";
}

/**
 * The server-url break: a typo in server_url and a restart. The client's own view follows: the
 * DERP map it is given names the typo. Returns the typo and what `tailscale debug derp` says.
 */
export async function typoServerUrl(g: GoingLive): Promise<{ typo: string; derp: string }> {
  const typo = g.name.replace("example", "exmaple");
  const restart = await g.lab.sh(
    "vps",
    `sed -i 's|^server_url: .*|server_url: https://${typo}:443|' /etc/headscale/config.yaml && headscale-service restart`,
  );
  if (restart.exitCode !== 0) throw new Error(`server_url typo and restart failed: ${restart.stdout}${restart.stderr}`);
  const derp = await eventually(
    "roaming's DERP map to name the typo",
    async () => {
      const r = await g.roaming.sh("tailscale debug derp headscale 2>&1");
      if (!r.stdout.includes(typo)) throw new Error(r.stdout.slice(0, 400));
      return r.stdout;
    },
    { timeout: TIMEOUT.converge },
  );
  return { typo, derp };
}
