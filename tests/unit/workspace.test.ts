import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { UserError } from "../../src/errors.ts";
import { makePlan, resolveOptions } from "../../src/lab/plan.ts";
import { ROOT, recipesDir } from "../../src/paths.ts";
import { loadRecipe } from "../../src/recipe/load.ts";
import { pickMux } from "../../src/workspace/mux.ts";
import { hostBanner, shellLine, shq, workspacePanes } from "../../src/workspace/panes.ts";
import { hostCommand, sessionName } from "../../src/workspace/tmux.ts";
import { zellijCommand, zellijLayout } from "../../src/workspace/zellij.ts";

const recipe = loadRecipe("recipe-1");
const plan = makePlan(recipe, "default", resolveOptions(recipe, {}), "ws-test");
const panes = workspacePanes(["podman"], plan);

/** KDL, as far as zellij layouts use it: nodes, string/bare arguments, props, `{ }` children. */
function kdlTree(text: string): { name: string; args: string[]; props: Record<string, string>; children: unknown[] }[] {
  type Node = { name: string; args: string[]; props: Record<string, string>; children: Node[] };
  const tokens: string[] = [];
  const re = /\s*(?:("(?:[^"\\]|\\.)*")|([{};])|([^\s{};"=]+="(?:[^"\\]|\\.)*")|([^\s{};"=]+=[^\s{};"]+)|([^\s{};"]+))/y;
  let m: RegExpExecArray | null;
  let at = 0;
  while (at < text.length) {
    re.lastIndex = at;
    m = re.exec(text);
    if (!m) {
      if (text.slice(at).trim() === "") break;
      throw new Error(`KDL: cannot read at ${at}: ${JSON.stringify(text.slice(at, at + 20))}`);
    }
    const tok = m[1] ?? m[2] ?? m[3] ?? m[4] ?? m[5]!;
    tokens.push(/\n/.test(text.slice(at, re.lastIndex - tok.length)) && tokens.length ? `\n${tok}` : tok);
    at = re.lastIndex;
  }
  const unq = (s: string) => (s.startsWith('"') ? (JSON.parse(s) as string) : s);
  let i = 0;
  const parse = (depth: number): Node[] => {
    const out: Node[] = [];
    let cur: Node | undefined;
    while (i < tokens.length) {
      const raw = tokens[i++]!;
      const newline = raw.startsWith("\n");
      const t = raw.replace(/^\n/, "");
      if (t === "}") {
        if (depth === 0) throw new Error("KDL: unbalanced }");
        return out;
      }
      if (t === "{") {
        if (!cur) throw new Error("KDL: { without a node");
        cur.children = parse(depth + 1);
        cur = undefined;
        continue;
      }
      if (t === ";") {
        cur = undefined;
        continue;
      }
      if (!cur || newline) {
        cur = { name: t, args: [], props: {}, children: [] };
        out.push(cur);
        continue;
      }
      const eq = t.indexOf("=");
      if (eq > 0 && !t.startsWith('"')) cur.props[t.slice(0, eq)] = unq(t.slice(eq + 1));
      else cur.args.push(unq(t));
    }
    if (depth !== 0) throw new Error("KDL: unclosed {");
    return out;
  };
  return parse(0);
}

describe("the workspace's panes", () => {
  it("are the host shell in the recipe's folder first, then one per interactive node, titled by role", () => {
    expect(panes[0]).toEqual({ title: "host", cwd: join(recipesDir, "recipe-1") });
    const interactive = Object.values(plan.nodes).filter((n) => n.interactive);
    expect(interactive.length).toBeGreaterThan(0);
    // The home NAT router is not interactive: no pane (negative control for the filter).
    expect(Object.values(plan.nodes).some((n) => !n.interactive)).toBe(true);
    expect(panes.slice(1).map((p) => p.node)).toEqual(interactive.map((n) => n.key));
    for (const [i, n] of interactive.entries()) {
      expect(panes[i + 1]!.title).toBe(`${n.role} (${n.container})`);
      expect(panes[i + 1]!.argv).toEqual(["podman", "exec", "-it", n.container, "bash"]);
    }
  });

  it("a recipe's panes come last and run ./start.ts on that lab (recipe-4's live paths); recipe-1 has none", () => {
    const r4 = loadRecipe("recipe-4");
    const p4 = workspacePanes(["podman"], makePlan(r4, "x1", resolveOptions(r4, {}), "ws-test"));
    expect(p4.at(-1)).toEqual({
      title: "paths (live, from the clients)",
      cwd: join(recipesDir, "recipe-4"),
      argv: [join(ROOT, "start.ts"), "paths", "recipe-4", "--watch", "--no-netcheck", "--lab", "x1"],
    });
    expect(panes.filter((p) => p.argv?.[0]?.endsWith("start.ts"))).toEqual([]);
  });

  it("tmux and zellij sessions are named after the lab", () => {
    expect(sessionName("default", "recipe-1")).toBe("wg3-recipe-1");
    expect(sessionName("blue", "recipe-1")).toBe("wg3-blue-recipe-1");
  });

  it("the host pane's banner gives commands that work from recipes/<recipe>/", () => {
    const b = hostBanner(plan, "keys").join("\n");
    expect(b).toContain("labs/recipe-1.md");
    expect(b).toContain("../../start.ts check recipe-1");
    expect(b).toContain("solution/");
    const blue = hostBanner({ ...plan, lab: "blue" }, "keys").join("\n");
    expect(blue).toContain("../../start.ts check recipe-1 --lab blue");
    // The banner really runs in a POSIX shell and prints exactly its lines.
    const r = spawnSync("sh", ["-c", hostCommand(plan, "keys").replace(/; exec .*$/, "")], { encoding: "utf8" });
    expect(r.stdout).toBe(`${hostBanner(plan, "keys").join("\n")}\n`);
  });

  it("shell quoting survives quotes, spaces and $", () => {
    const words = ["plain", "two words", "it's", "$HOME", 'a"b', ""];
    const r = spawnSync("sh", ["-c", `printf '<%s>' ${shellLine(words)}`], { encoding: "utf8" });
    expect(r.stdout).toBe(words.map((w) => `<${w}>`).join(""));
    expect(shq("wg-recipe-1_home")).toBe("wg-recipe-1_home");
  });
});

describe("the zellij layout", () => {
  const text = zellijLayout("recipe-1", panes);
  const tree = kdlTree(text);

  it("is KDL with one layout holding a tab named after the recipe", () => {
    expect(tree.map((n) => n.name)).toEqual(["layout"]);
    const tabs = (tree[0]!.children as ReturnType<typeof kdlTree>).filter((n) => n.name === "tab");
    expect(tabs).toHaveLength(1);
    expect(tabs[0]!.props.name).toBe("recipe-1");
  });

  it("has the host pane in the recipe's folder, focused, then one pane per interactive node running the engine's exec", () => {
    const tab = (tree[0]!.children as ReturnType<typeof kdlTree>).find((n) => n.name === "tab")!;
    const [host, right] = tab.children as ReturnType<typeof kdlTree>;
    expect(host!.props).toMatchObject({ name: "host", cwd: join(ROOT, "recipes", "recipe-1"), focus: "true" });
    expect(host!.props.command).toBeUndefined();
    const nodes = right!.children as ReturnType<typeof kdlTree>;
    expect(nodes).toHaveLength(panes.length - 1);
    for (const [i, p] of panes.slice(1).entries()) {
      expect(nodes[i]!.props.name).toBe(p.title);
      expect(nodes[i]!.props.command).toBe("podman");
      const args = (nodes[i]!.children as ReturnType<typeof kdlTree>).find((c) => c.name === "args")!;
      expect(args.args).toEqual(p.argv!.slice(1));
    }
  });

  it("gives the host pane its banner command when asked, and escapes quotes and backslashes", () => {
    const odd = [{ title: 'say "hi" \\ there', cwd: "/tmp/a b" }];
    const t = kdlTree(zellijLayout("x", odd, ["sh", "-c", 'echo "x"; exec bash']));
    const tab = (t[0]!.children as ReturnType<typeof kdlTree>).find((n) => n.name === "tab")!;
    const host = (tab.children as ReturnType<typeof kdlTree>)[0]!;
    expect(host.props).toMatchObject({ name: 'say "hi" \\ there', cwd: "/tmp/a b", command: "sh" });
    expect((host.children as ReturnType<typeof kdlTree>)[0]!.args).toEqual(["-c", 'echo "x"; exec bash']);
  });

  it("is opened with --layout and --session, or attached when the session exists", () => {
    expect(zellijCommand("wg3-recipe-1", "/x.kdl", false)).toEqual(["zellij", "--layout", "/x.kdl", "--session", "wg3-recipe-1"]);
    expect(zellijCommand("wg3-recipe-1", "/x.kdl", true)).toEqual(["zellij", "attach", "wg3-recipe-1"]);
  });

  it("the KDL reader used here rejects broken text (negative control)", () => {
    expect(() => kdlTree("layout {\n  tab {\n}\n")).toThrow(/unclosed/);
    expect(() => kdlTree("layout }\n")).toThrow(/unbalanced/);
  });
});

describe("choosing the multiplexer", () => {
  it("prefers tmux, falls back to zellij, and says when neither exists", () => {
    expect(pickMux(undefined, { tmux: true, zellij: true })).toEqual({ mux: "tmux" });
    expect(pickMux(undefined, { tmux: false, zellij: true }).mux).toBe("zellij");
    const none = pickMux(undefined, { tmux: false, zellij: false });
    expect(none.mux).toBeUndefined();
    expect(none.note).toMatch(/Neither tmux nor zellij is installed/);
  });

  it("--mux picks one when it is installed, and says so when it is not", () => {
    expect(pickMux("zellij", { tmux: true, zellij: true })).toEqual({ mux: "zellij" });
    const missing = pickMux("zellij", { tmux: true, zellij: false });
    expect(missing.mux).toBeUndefined();
    expect(missing.note).toMatch(/zellij is not installed/);
  });

  it("a bad --mux value is a usage error", () => {
    expect(() => pickMux("screen", { tmux: true, zellij: true })).toThrow(UserError);
    expect(() => pickMux("screen", { tmux: true, zellij: true })).toThrow(/--mux must be tmux or zellij/);
  });
});
