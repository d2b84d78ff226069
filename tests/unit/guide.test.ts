import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { hostHold, translator, withLab } from "../../src/guide/lab-target.ts";
import { outputMatches } from "../../src/guide/match.ts";
import { parseGuide, unmarkedShellBlocks } from "../../src/guide/parse.ts";
import { type GuideTarget, type Ran, runGuide } from "../../src/guide/run.ts";
import { ROOT } from "../../src/paths.ts";

/** A lab where only peer-2's mesh address answers a ping; every command is answered from a table. */
function fakeLab(answers: (on: string, script: string) => Ran): GuideTarget & { ran: string[] } {
  const ran: string[] = [];
  return {
    ran,
    translate: (t) => t,
    async run(on, script) {
      ran.push(`${on}: ${script}`);
      return answers(on, script);
    },
    async hold(on, script) {
      ran.push(`${on} (held): ${script}`);
      return {
        output: async () => "listening on",
        interrupt: async () => "listening on\nhello",
        ended: async () => (script.includes("timeout") ? "listening on\n3 packets captured" : undefined),
      };
    },
    async solve(ex) {
      ran.push(`solve ${ex}`);
    },
  };
}

const pingAnswers = (_on: string, script: string): Ran => {
  const ip = /ping -c1 -W1 (\S+)/.exec(script)?.[1];
  if (!ip) return { exitCode: 0, output: "" };
  const ok = ip === "10.0.99.12";
  return {
    exitCode: ok ? 0 : 1,
    output: `PING ${ip} (${ip}) 56(84) bytes of data.\n${ok ? `64 bytes from ${ip}: icmp_seq=1 ttl=64 time=0.4 ms\n` : ""}\n--- ${ip} ping statistics ---\n1 packets transmitted, ${ok ? 1 : 0} received, ${ok ? 0 : 100}% packet loss, time 0ms\n`,
  };
};

describe("a guide is a test", () => {
  it("parses marks, output blocks and the line of each block", () => {
    const g = parseGuide(readFileSync(join(ROOT, "tests/unit/fixtures/guides/wrong-address.md"), "utf8"), "wrong-address.md");
    expect(g.steps.map((s) => [s.line, s.on, s.output?.line])).toEqual([
      [3, ["peer-1"], undefined],
      [9, ["peer-1"], 13],
    ]);
  });

  it("a guide with a wrong address fails, naming the guide, the line and the block", async () => {
    const text = readFileSync(join(ROOT, "tests/unit/fixtures/guides/wrong-address.md"), "utf8");
    const run = (t: string) => runGuide(parseGuide(t, "labs/fixture.md"), fakeLab(pingAnswers));
    // Control: the same guide with the right address passes against the same lab.
    await expect(run(text.replaceAll("10.0.99.99", "10.0.99.12"))).resolves.toBeUndefined();
    await expect(run(text)).rejects.toThrow(/^labs\/fixture\.md:9: the block on peer-1 `ping -c1 -W1 10\.0\.99\.99` exited 1/);
  });

  it("an output that differs from the guide's fails with both lines", async () => {
    const g = parseGuide("```sh {on=host}\necho hello\n```\n\n```text {output}\nhallo\n```\n", "g.md");
    const lab = fakeLab(() => ({ exitCode: 0, output: "hello\n" }));
    await expect(runGuide(g, lab)).rejects.toThrow(
      /^g\.md:1: the block on host `echo hello` does not print what the guide shows at line 5/,
    );
  });

  it("editor blocks become the reference solution once; skipped blocks do not run; held blocks get Ctrl-C", async () => {
    const md = [
      "```ini {on=a,b solve=configure}\n[Peer]\n```",
      '```sh {on=host skip="the test starts its lab"}\n./start.ts recipe-0\n```',
      '```sh {on=a waits ready="listening on"}\nnc -nvlp 8000\n```',
      "```text {output}\nlistening on\nhello\n```",
      "```sh {on=b}\necho hi\n```",
    ].join("\n\n");
    const lab = fakeLab(() => ({ exitCode: 0, output: "hi\n" }));
    await runGuide(parseGuide(md, "g.md"), lab);
    expect(lab.ran).toEqual(["solve configure", "a (held): nc -nvlp 8000", "b: echo hi"]);
  });

  it("a block that ends by itself is waited for, not interrupted; one that does not end fails", async () => {
    const md = (cmd: string) =>
      [
        `\`\`\`sh {on=a ends=20 ready="listening on"}\n${cmd}\n\`\`\``,
        "```text {output}\nlistening on\n<n> packets captured\n```",
        "```sh {on=a}\nls\n```",
      ].join("\n\n");
    const lab = fakeLab(() => ({ exitCode: 0, output: "" }));
    await runGuide(parseGuide(md("timeout 20 tcpdump"), "g.md"), lab);
    expect(lab.ran).toEqual(["a (held): timeout 20 tcpdump", "a: ls"]);
    await expect(
      runGuide(
        parseGuide(md("tcpdump"), "g.md"),
        fakeLab(() => ({ exitCode: 0, output: "" })),
      ),
    ).rejects.toThrow(/^g\.md:1: the block on a `tcpdump` did not end by itself within 20 s/);
  });

  it("a held host block gets Ctrl-C, or is waited for when it ends by itself", async () => {
    const trap = hostHold("trap 'echo stopped; exit 0' INT; echo listening; while :; do read -r -t 1 || :; done");
    await expect.poll(() => trap.output(), { timeout: 5000 }).toContain("listening");
    expect(await trap.ended(300)).toBeUndefined();
    expect(await trap.interrupt()).toBe("listening\nstopped\n");
    const echo = hostHold('read -r line; echo "got $line"', "hello");
    expect(await echo.ended(5000)).toBe("got hello\n");
  });

  it("placeholders stand for what varies; other <...> is literal", () => {
    expect(outputMatches("public key: <key>", "public key: Lk7OLpxltVlL0xMhN6q65+EVmXBfjeGcufWNoO9mXlU=")).toBe(true);
    expect(outputMatches("public key: <key>", "public key: nope")).toBe(false);
    expect(outputMatches("<h1>Hello</h1>", "<h1>Hello</h1>\n")).toBe(true);
    expect(outputMatches("1 | home | <100.64.x.y>", "1  | home    | 100.64.0.1")).toBe(true);
    expect(outputMatches("1 | home | <100.64.x.y>", "1  | home    | 10.1.99.12")).toBe(false);
    expect(outputMatches("a\n...\nz", "a\nb\nc\nz")).toBe(true);
    expect(outputMatches("a\n...\nz", "a\nz")).toBe(true);
    expect(outputMatches("a\nz", "a\nb\nz")).toBe(false);
  });

  it("maps the default lab's names to a test lab's, whole names only", () => {
    const tr = translator([
      ["wg-recipe-1_home-router", "t-x-wg-recipe-1_home-router"],
      ["recipe-1_home", "t-x-recipe-1_home"],
      ["10.1.99.10", "10.213.5.10"],
      ["10.1.99.1", "10.213.5.1"],
    ]);
    expect(tr("exec wg-recipe-1_home-router; net recipe-1_home; 10.1.99.10:51820 10.1.99.1 10.1.99.100")).toBe(
      "exec t-x-wg-recipe-1_home-router; net t-x-recipe-1_home; 10.213.5.10:51820 10.213.5.1 10.1.99.100",
    );
    expect(withLab("./start.ts check recipe-0 && ./start.ts exec recipe-0 peer-1 -- wg; ./start.ts recipe-1", "t-x", "recipe-0")).toBe(
      "./start.ts check recipe-0 --lab t-x && ./start.ts exec recipe-0 --lab t-x peer-1 -- wg; ./start.ts recipe-1",
    );
    expect(withLab('echo "$(podman container exec wg-recipe-0_peer-$n cat k)"; docker exec -it t-x-a sh', "t-x", "recipe-0")).toBe(
      'echo "$(podman container exec t-x-wg-recipe-0_peer-$n cat k)"; docker exec -it t-x-a sh',
    );
  });

  it("a kept value (the first word of a block's last line) replaces its word in the blocks after it, whole words only", async () => {
    const md = [
      "```sh {on=hs keep=KEY}\nheadscale preauthkeys create -u 2\n```",
      "```sh {on=hs keep=ID}\nheadscale preauthkeys list | tail -n 1\n```",
      "```sh {on=bob}\nguest up --auth-key KEY # KEYS KEY_2\nheadscale preauthkeys expire -i ID\n```",
    ].join("\n\n");
    const lab = fakeLab((_on, script) => ({
      exitCode: 0,
      output: script.includes("create") ? "hskey-auth-abc\n" : script.includes("list") ? "ID | Key\n7  | hskey-auth-abc-*** \n" : "",
    }));
    await runGuide(parseGuide(md, "g.md"), lab);
    expect(lab.ran.at(-1)).toBe("bob: guest up --auth-key hskey-auth-abc # KEYS KEY_2\nheadscale preauthkeys expire -i 7");
    // A block that prints nothing leaves nothing to copy: the guide is wrong there.
    const empty = fakeLab(() => ({ exitCode: 0, output: "\n" }));
    await expect(runGuide(parseGuide(md, "g.md"), empty)).rejects.toThrow(
      /^g\.md:1: the block on hs `headscale preauthkeys create -u 2` printed nothing to keep as KEY/,
    );
  });

  it("a bad mark names the guide's line", () => {
    expect(() => parseGuide("text\n\n```sh {on=host colour=red}\nls\n```\n", "g.md")).toThrow(/^g\.md:3: unknown mark "colour"/);
  });

  it.each(["recipe-0", "recipe-1", "recipe-2", "recipe-3", "recipe-4", "recipe-5"])("every shell block of labs/%s.md is marked", (r) => {
    const md = readFileSync(join(ROOT, "labs", `${r}.md`), "utf8");
    expect(unmarkedShellBlocks(md)).toEqual([]);
    expect(parseGuide(md, `labs/${r}.md`).steps.length).toBeGreaterThan(3);
  });
});
