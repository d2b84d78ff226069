import { describe, expect, it } from "vitest";
import { actualText, type MatrixCell, parseProbes, probeScript } from "../../src/lab/matrix.ts";

describe("the reachability matrix's probes", () => {
  it("reads nc's answers: connected is open, refused is reached, anything else is blocked", () => {
    const out = [
      "100.64.0.1:80 0|Connection to 100.64.0.1 80 port [tcp/http] succeeded! ",
      "100.64.0.1:22 1|nc: connect to 100.64.0.1 port 22 (tcp) failed: Connection refused ",
      "100.64.0.2:22 1|nc: connect to 100.64.0.2 port 22 (tcp) timed out: Operation now in progress ",
      '100.64.0.3:80 1|nc: getaddrinfo for host "" port 80: Name or service not known ',
    ].join("\n");
    expect(Object.fromEntries([...parseProbes(out)].map(([k, v]) => [k, v.outcome]))).toEqual({
      "100.64.0.1:80": "open",
      "100.64.0.1:22": "refused",
      "100.64.0.2:22": "blocked",
      "100.64.0.3:80": "blocked",
    });
  });

  it("probes every target in parallel, each answer one line written at once", () => {
    const s = probeScript(["100.64.0.1:80", "100.64.0.2:22"]);
    expect(s).toContain("for t in 100.64.0.1:80 100.64.0.2:22;");
    expect(s).toContain("nc -zv -w 2 ");
    expect(s).toContain(`printf '%s\\n' "$t $rc|`);
    expect(s).toMatch(/& done; wait$/);
  });

  it.each([
    [{ actual: "blocked", visible: true }, "visible but blocked"],
    [{ actual: "blocked", visible: false }, "blocked"],
    [{ actual: "refused", visible: true }, "reached (nothing listens)"],
    [{ actual: "open", visible: true }, "open"],
  ] as const)("%o is shown as %s", (c, text) => {
    expect(actualText(c as unknown as MatrixCell)).toBe(text);
  });
});
