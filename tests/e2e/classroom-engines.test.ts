/**
 * A class on two engines: this machine's podman service and a second podman service with its
 * own storage (tests/support/second-engine.ts), as another machine's would be. Seats are spread
 * evenly, each seat's check, solve and terminal reach its own engine, the facilitator sees both
 * engines, and `classroom down` leaves nothing on either.
 */

import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { classDir, readClass } from "../../src/classroom/state.ts";
import type { Engine } from "../../src/engine/engine.ts";
import { ensureEngine } from "../../src/engine/ensure.ts";
import { LABEL } from "../../src/engine/labels.ts";
import { eventually } from "../support/eventually.ts";
import { testLabName } from "../support/labs.ts";
import { freePort } from "../support/ports.ts";
import { SecondPodman } from "../support/second-engine.ts";
import { mustSucceed, type RunningStartTs, spawnStartTs, startTs } from "../support/start-ts.ts";
import { TIMEOUT } from "../support/timeouts.ts";

const RECIPE = "recipe-0";
const CLASS = testLabName("cle");

describe(`a class of ${RECIPE} on two engines (class ${CLASS})`, () => {
  let first: Engine;
  let second: Engine;
  let other: SecondPodman;
  let server: RunningStartTs | undefined;
  let base: string;

  beforeAll(async () => {
    first = await ensureEngine({});
    other = await SecondPodman.start();
    second = await other.engine();
  });
  afterAll(async () => {
    server?.child.kill("SIGINT");
    if (readClass(CLASS)) await startTs(["classroom", "down", "--class", CLASS]);
    await other?.remove();
  });

  const seatsOf = async (e: Engine) => [...new Set((await e.listContainers({ classroom: CLASS })).map((c) => c.labels[LABEL.lab]))].sort();
  const post = (path: string) => fetch(`${base}${path}`, { method: "POST" });
  const classUp = (engines: string) => ["classroom", "up", "--seats", "2", "--recipe", RECIPE, "--class", CLASS, "--engines", engines];

  it("an engine that does not answer is refused in one sentence, and nothing is made", async () => {
    const r = await startTs(classUp("unix:///run/wg3-no-such.sock"));
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split("\n").at(-1)).toMatch(
      /^The engine at unix:\/\/\/run\/wg3-no-such\.sock does not answer \(.*\); start it, or leave it out of --engines\.$/,
    );
    expect(existsSync(classDir(CLASS))).toBe(false);
    expect(await seatsOf(first)).toEqual([]);
  });

  it("up spreads the seats: seat 01 on this machine's engine, seat 02 on the second, each with its images", async () => {
    expect(await seatsOf(second)).toEqual([]); // before: nothing of the class on either
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    server = spawnStartTs([...classUp(other.dockerHost), "--listen", "127.0.0.1", "--port", String(port), "--sweep", "2"], {
      timeoutMs: Number.POSITIVE_INFINITY,
    });
    const running = server;
    await Promise.race([
      eventually("classroom up to serve", () => running.output().includes("serving at"), {
        timeout: 2 * TIMEOUT.cli,
        seen: () => running.output().slice(-1500),
      }),
      running.exited.then(() => {
        throw new Error(`classroom up exited: ${running.output().slice(-1500)}`);
      }),
    ]);
    expect(await seatsOf(first)).toEqual([`${CLASS}-01`]);
    expect(await seatsOf(second)).toEqual([`${CLASS}-02`]);
    const status = JSON.parse(mustSucceed(await startTs(["classroom", "status", "--class", CLASS, "--json"])).stdout) as {
      seats: { seat: number; running: number; nodes: number; engine: string }[];
    };
    expect(status.seats.map((s) => [s.seat, s.engine, s.running === s.nodes])).toEqual([
      [1, first.dockerHost, true],
      [2, other.dockerHost, true],
    ]);
    expect(server.output()).toMatch(/copy image \S+ to unix:\/\/\/var\/tmp\/wg3-engine-/);
  });

  it("seat 02's check and solve act on the second engine's containers, and its terminal opens there", async () => {
    const seat = readClass(CLASS)!.seats.find((s) => s.n === 2)!;
    const check = async () =>
      ((await (await post(`/seat/02/check?token=${seat.token}`)).json()) as { exercises: { id: string; state: string }[] }).exercises;
    // Negative control: nothing done yet in seat 02.
    expect((await check()).find((x) => x.id === "configure")?.state).not.toBe("pass");
    expect((await post(`/seat/02/solve/configure?token=${seat.token}`)).status).toBe(200);
    await eventually("configure passes in seat 02", async () => (await check()).find((x) => x.id === "configure")?.state === "pass");
    // The solution's files are in the second engine's containers, and not in seat 01's.
    const peer = (await second.listContainers({ lab: seat.lab }))[0]!;
    expect((await second.sh(peer.name, "ls /etc/wireguard/")).stdout).toMatch(/recipe-0\.conf/);
    // The terminal: a file it touches appears in seat 02's first node on the second engine.
    const marker = `/tmp/wg3-terminal-${Date.now()}`;
    const node = (await second.listContainers({ lab: seat.lab })).find((c) => c.labels[LABEL.node] === "peer-1")!;
    const said = await new Promise<string>((resolve, reject) => {
      const ws = new WebSocket(`${base.replace(/^http/, "ws")}/seat/02/terminal?token=${seat.token}&node=peer-1`);
      let seen = "";
      ws.on("open", () => ws.send(JSON.stringify({ t: "in", d: `touch ${marker}; echo done-$((6*7))\r` })));
      ws.on("message", (d) => {
        seen += d.toString();
        if (seen.includes("done-42")) {
          ws.close();
          resolve(seen);
        }
      });
      ws.on("error", reject);
      setTimeout(() => reject(new Error(`seat 02's terminal never said done-42; seen: ${seen.slice(-300)}`)), TIMEOUT.poll).unref();
    });
    expect(said).toContain("done-42");
    expect((await second.sh(node.name, `test -e ${marker}`)).exitCode).toBe(0);
  });

  it("the facilitator sees both engines answering, each with its seat", async () => {
    const key = readClass(CLASS)!.facilitatorSecret;
    const res = await fetch(`${base}/events?key=${key}`);
    const reader = res.body!.getReader();
    let text = "";
    let engines: { host: string; ok: boolean; seats: number[] }[] = [];
    await eventually("an update naming both engines", async () => {
      text += new TextDecoder().decode((await reader.read()).value);
      const last = text
        .split("\n")
        .filter((l) => l.startsWith("data: "))
        .at(-1);
      engines = last ? (JSON.parse(last.slice(6)) as { engines: typeof engines }).engines : [];
      return engines.length === 2;
    });
    await reader.cancel();
    expect(engines.map((e) => [e.host, e.ok, e.seats])).toEqual([
      [first.dockerHost, true, [1]],
      [other.dockerHost, true, [2]],
    ]);
  });

  it("down removes the seats from both engines", async () => {
    server?.child.kill("SIGINT");
    await server?.exited;
    mustSucceed(await startTs(["classroom", "down", "--class", CLASS]));
    expect(await seatsOf(first)).toEqual([]);
    expect(await seatsOf(second)).toEqual([]);
    expect(await second.listNetworks({ lab: `${CLASS}-02` })).toEqual([]);
    expect(readClass(CLASS)).toBeUndefined();
  });
});
