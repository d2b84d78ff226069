import { describe, expect, it } from "vitest";
import { limitFor, loadgenBusy, ownerOf, PhaseBoard, parseLimits, shares, spreadIndices } from "../../bench/control/aggregate.ts";
import type { LoadResult } from "../../bench/control/loadgen.ts";
import { scanMap, summarizeMap } from "../../bench/control/map-scan.ts";
import { applyMap, beginWatch, endpointsKey, type NodeState, newNodeState, satisfies, type Watch } from "../../bench/control/sim-node.ts";
import { ceilingSentence, type Row, summarize, whereHeadscaleWins } from "../../bench/control/summary.ts";

/** Apply a message as a worker does (scanned from its JSON bytes), checking the scan against JSON.parse. */
function apply(s: NodeState, m: Record<string, unknown>, w: Watch | undefined): void {
  const scanned = scanMap(Buffer.from(JSON.stringify(m)));
  expect(scanned).toEqual(summarizeMap(m));
  applyMap(s, scanned, w);
}

describe("control-plane benchmark: a simulated node's view", () => {
  it("follows the full netmap and the deltas, and never counts itself", () => {
    const s = newNodeState();
    apply(s, { Node: { ID: 1 }, Peers: [{ ID: 2 }, { ID: 3 }] }, undefined);
    expect([...s.peers]).toEqual(["2", "3"]);
    // A server that shares one delta between all streams lists the node itself too.
    apply(s, { PeersChanged: [{ ID: 1 }, { ID: 4 }] }, undefined);
    apply(s, { PeersRemoved: [2] }, undefined);
    expect([...s.peers].sort()).toEqual(["3", "4"]);
    expect(satisfies(s, { kind: "peers", atLeast: 2 })).toBe(true);
    expect(satisfies(s, { kind: "peers", atLeast: 3 })).toBe(false);
  });

  it("has dropped a node only once a delta or a new netmap removes it", () => {
    const s = newNodeState();
    const gone = { kind: "gone", id: "3" } as const;
    apply(s, { Node: { ID: 1 }, Peers: [{ ID: 3 }] }, gone);
    expect(satisfies(s, gone)).toBe(false);
    apply(s, { PeersRemoved: [3] }, gone);
    expect(satisfies(s, gone)).toBe(true);
  });

  it("has seen new endpoints from a patch or a changed node, in any order, but not the old ones", () => {
    const want = { kind: "endpoints", want: { "2": endpointsKey(["b:2", "a:1"]), "3": endpointsKey(["c:3"]), "1": "x" } } as const;
    const s = newNodeState();
    apply(s, { Node: { ID: 1 }, Peers: [{ ID: 2, Endpoints: ["old:1"] }, { ID: 3 }] }, want);
    expect(satisfies(s, want)).toBe(false);
    apply(s, { PeersChangedPatch: [{ NodeID: 2, Endpoints: ["a:1", "b:2"] }] }, want);
    expect(satisfies(s, want)).toBe(false);
    // Its own new endpoints (ID 1) are not something it waits to see.
    apply(s, { PeersChanged: [{ ID: 3, Endpoints: ["c:3"] }] }, want);
    expect(satisfies(s, want)).toBe(true);
    beginWatch(s);
    expect(satisfies(s, want)).toBe(false);
  });

  it("is fresh after a restart only with a new full netmap of enough peers", () => {
    const s = newNodeState();
    const fresh = { kind: "fresh", atLeast: 2 } as const;
    apply(s, { Node: { ID: 1 }, Peers: [{ ID: 2 }, { ID: 3 }] }, fresh);
    beginWatch(s);
    apply(s, { PeersChanged: [{ ID: 4 }] }, fresh);
    expect(satisfies(s, fresh)).toBe(false);
    apply(s, { Node: { ID: 1 }, Peers: [{ ID: 2 }] }, fresh);
    expect(satisfies(s, fresh)).toBe(false);
    apply(s, { Node: { ID: 1 }, Peers: [{ ID: 2 }, { ID: 4 }] }, fresh);
    expect(satisfies(s, fresh)).toBe(true);
  });
});

describe("control-plane benchmark: aggregating the workers", () => {
  it("deals nodes round-robin, and ownerOf agrees", () => {
    const s = shares(7, 3);
    expect(s).toEqual([
      [0, 3, 6],
      [1, 4],
      [2, 5],
    ]);
    for (const [w, idx] of s.entries()) for (const i of idx) expect(ownerOf(i, 3)).toBe(w);
    expect(ownerOf(7, 3)).toBe(1);
  });

  it("ends a phase at the latest worker's stamp, only when all are satisfied at once", () => {
    const b = new PhaseBoard(3);
    b.report(0, true, 100);
    b.report(1, true, 300);
    expect(b.doneAt()).toBeUndefined();
    b.report(2, true, 200);
    expect(b.doneAt()).toBe(300);
    // A worker that falls back counts again from its next report.
    b.report(1, false, 350);
    expect(b.doneAt()).toBeUndefined();
    b.report(1, true, 400);
    expect(b.doneAt()).toBe(400);
  });

  it("says how busy the load generator was, over all its cores and for its busiest process", () => {
    expect(loadgenBusy({ parent: 1, workers: [4, 3] }, 10, 1)).toEqual({ total: 0.8, busiestWorker: 0.4 });
    expect(loadgenBusy({ parent: 0, workers: [9, 1] }, 10, 2)).toEqual({ total: 0.5, busiestWorker: 0.9 });
    expect(loadgenBusy({ parent: 1, workers: [] }, 0, 1)).toEqual({ total: 0, busiestWorker: 0 });
  });

  it("takes a size's limit from its own entry, else the next larger, else the largest", () => {
    const l = parseLimits("100:300, 1000:1200,5000:1800");
    expect(limitFor(100, l)).toBe(300);
    expect(limitFor(30, l)).toBe(300);
    expect(limitFor(2000, l)).toBe(1800);
    expect(limitFor(9000, l)).toBe(1800);
    expect(() => parseLimits("100")).toThrow(/nodes:seconds/);
    expect(() => parseLimits("")).toThrow(/empty/);
  });

  it("spreads the moving nodes evenly and never asks for more than there are", () => {
    expect(spreadIndices(100, 4)).toEqual([0, 25, 50, 75]);
    expect(spreadIndices(3, 10)).toEqual([0, 1, 2]);
    expect(spreadIndices(10, 0)).toEqual([]);
  });
});

function result(o: Partial<LoadResult>): LoadResult {
  return {
    nodes: 100,
    registeredS: 1,
    fullMeshS: 2,
    serverCpuS: 1,
    serverPeakRssMiB: 100,
    loadgen: { workers: 2, cpuS: 1, busy: 0.5, busiestWorker: 0.3 },
    mapBytesPerNode: 2048,
    streamResets: 0,
    joinS: 0.1,
    leaveS: 0.1,
    churn: { nodes: 10, s: 0.2, bytesPerNode: 1024 },
    restartS: 1,
    complete: true,
    ...o,
  };
}

describe("control-plane benchmark: the published rows", () => {
  it("takes medians and the spread over the runs that completed", () => {
    const r = summarize("builtin (x)", 100, [result({ fullMeshS: 3 }), result({ fullMeshS: 1 }), result({ fullMeshS: 2, leaveS: 0.5 })]);
    expect(r.fullMeshS).toBe(2);
    expect(r.spread).toBe("1-3 s");
    expect(r.leaveS).toBe(0.1);
    expect(r.churnKiB).toBe(1);
    expect(r.loadgen).toBe("50% (2 procs, busiest 30%)");
    expect(r.note).toBe("");
  });

  it("reports a run past its limit as not completed, not as a failure, and flags a saturated load generator", () => {
    const late = result({
      complete: false,
      fullMeshS: null,
      timedOut: { limitS: 300, stage: "the mass join of 100 nodes", progress: "80 of 100 nodes registered" },
    });
    const r = summarize("headscale", 100, [result({ loadgen: { workers: 2, cpuS: 9, busy: 0.95, busiestWorker: 0.6 } }), late]);
    expect(r.note).toBe("did not complete within 300 s (during the mass join of 100 nodes; 80 of 100 nodes registered; 0 stream resets).");
    expect(r.fullMeshS).toBe(2);
    expect(r.loadgen).toMatch(/SATURATED/);
    expect(summarize("x", 5, [result({ complete: false, error: "boom" })]).note).toMatch(/^FAILED in 1 of 1 runs: boom/);
  });

  const row = (server: string, nodes: number, o: Partial<Row>): Row => ({ ...summarize(server, nodes, [result({})]), ...o });

  it("states where Headscale measured faster, with the measured figures, and nowhere else", () => {
    const rows = [
      row("builtin (x)", 100, { fullMeshS: 1, kibPerNode: 50, leaveS: 0.01 }),
      row("headscale v1", 100, { fullMeshS: 10, kibPerNode: 9, leaveS: 1.2 }),
      row("headscale-tuned v1", 100, { fullMeshS: 5, kibPerNode: 10, leaveS: 1.1 }),
    ];
    const s = whereHeadscaleWins(rows);
    expect(s).toContain("map bytes per node to full mesh at 100 nodes (headscale 9 KiB, builtin 50 KiB)");
    expect(s).not.toContain("mass join");
    expect(s).not.toContain("leaving");
    const none = whereHeadscaleWins([
      row("builtin (x)", 100, {}),
      row("headscale v1", 100, { kibPerNode: 99, rssMiB: 200, cpuS: 9, churnKiB: 9 }),
    ]);
    expect(none).toMatch(/Headscale was faster nowhere/);
    expect(whereHeadscaleWins([row("builtin (x)", 100, {})])).toMatch(/not both measured/);
    const stuck = (server: string, got: number) =>
      row(server, 1000, {
        fullMeshS: null,
        note: `did not complete within 900 s (during the mass join of 1000 nodes; 1000 nodes held a map stream, ${got} had got there).`,
      });
    expect(whereHeadscaleWins([stuck("builtin (x)", 18), stuck("headscale v1", 205), stuck("headscale-tuned v1", 174)])).toContain(
      "getting further at 1000 nodes, where neither completed within the limit (headscale: 205 of 1000 nodes had all peers, builtin 18)",
    );
    expect(whereHeadscaleWins([stuck("builtin (x)", 300), stuck("headscale v1", 205)])).toMatch(/faster nowhere/);
  });

  it("compares each server with the load generator's ceiling at the same size", () => {
    const s = ceilingSentence([row("null (bench)", 100, { fullMeshS: 0.5 }), row("builtin (x)", 100, { fullMeshS: 1 })]);
    expect(s).toContain(
      "at 100 nodes the load generator reached full mesh against the null server in 0.5 s (the real servers took builtin 2x that)",
    );
    expect(ceilingSentence([row("builtin (x)", 100, {})])).toMatch(/not measured/);
  });
});
