import { describe, expect, it } from "vitest";
import { topologyMermaid, topologySvg } from "../../src/graph/topology.ts";
import { makePlan, resolveOptions } from "../../src/lab/plan.ts";
import { listRecipes, loadRecipe } from "../../src/recipe/load.ts";

/**
 * A strict XML well-formedness check (the XML 1.0 rules an SVG viewer enforces): one root
 * element, balanced and properly nested tags, quoted and unique attributes, no raw `<` in text
 * or attribute values, and every `&` starting a known entity or a character reference.
 * Returns the element names in document order, or throws naming the first problem.
 */
function parseXml(doc: string): { elements: string[]; text: string } {
  const name = "[A-Za-z_:][A-Za-z0-9_:.-]*";
  const entity = /&(?:amp|lt|gt|quot|apos|#[0-9]+|#x[0-9A-Fa-f]+);/y;
  const checkChars = (s: string, at: number, where: string) => {
    for (let i = 0; i < s.length; i++) {
      if (s[i] === "<") throw new Error(`raw < in ${where} at ${at + i}`);
      if (s[i] === "&") {
        entity.lastIndex = i;
        if (!entity.test(s)) throw new Error(`bare & in ${where} at ${at + i}: ${JSON.stringify(s.slice(i, i + 12))}`);
      }
    }
  };
  const stack: string[] = [];
  const elements: string[] = [];
  const texts: string[] = [];
  let roots = 0;
  let i = 0;
  const decl = /^<\?xml[^?]*\?>/.exec(doc);
  if (decl) i = decl[0].length;
  const openTag = new RegExp(`<(${name})((?:\\s+${name}\\s*=\\s*(?:"[^"]*"|'[^']*'))*)\\s*(/?)>`, "y");
  const closeTag = new RegExp(`</(${name})\\s*>`, "y");
  const attr = new RegExp(`(${name})\\s*=\\s*(?:"([^"]*)"|'([^']*)')`, "g");
  while (i < doc.length) {
    if (doc.startsWith("<!--", i)) {
      const end = doc.indexOf("-->", i + 4);
      if (end < 0) throw new Error(`unterminated comment at ${i}`);
      if (doc.slice(i + 4, end).includes("--")) throw new Error(`"--" inside a comment at ${i}`);
      i = end + 3;
      continue;
    }
    if (doc.startsWith("</", i)) {
      closeTag.lastIndex = i;
      const m = closeTag.exec(doc);
      if (!m) throw new Error(`malformed end tag at ${i}: ${JSON.stringify(doc.slice(i, i + 30))}`);
      const open = stack.pop();
      if (open !== m[1]) throw new Error(`</${m[1]}> at ${i} closes <${open ?? "nothing"}>`);
      i = closeTag.lastIndex;
      continue;
    }
    if (doc[i] === "<") {
      openTag.lastIndex = i;
      const m = openTag.exec(doc);
      if (!m) throw new Error(`malformed tag at ${i}: ${JSON.stringify(doc.slice(i, i + 40))}`);
      if (!stack.length) {
        roots++;
        if (roots > 1) throw new Error(`a second root element <${m[1]}> at ${i}`);
      }
      const seen = new Set<string>();
      for (const a of m[2]!.matchAll(attr)) {
        if (seen.has(a[1]!)) throw new Error(`attribute ${a[1]} twice on <${m[1]}> at ${i}`);
        seen.add(a[1]!);
        checkChars(a[2] ?? a[3] ?? "", i, `attribute ${a[1]} of <${m[1]}>`);
      }
      elements.push(m[1]!);
      if (!m[3]) stack.push(m[1]!);
      i = openTag.lastIndex;
      continue;
    }
    const next = doc.indexOf("<", i);
    const text = doc.slice(i, next < 0 ? doc.length : next);
    if (!stack.length && text.trim()) throw new Error(`text outside the root element at ${i}: ${JSON.stringify(text.slice(0, 30))}`);
    checkChars(text, i, "text");
    texts.push(text);
    i = next < 0 ? doc.length : next;
  }
  if (stack.length) throw new Error(`unclosed <${stack.join("> <")}>`);
  if (roots !== 1) throw new Error("no root element");
  const decode = (s: string) =>
    s
      .replace(/&lt;/g, "<")
      .replace(/&gt;/g, ">")
      .replace(/&quot;/g, '"')
      .replace(/&apos;/g, "'")
      .replace(/&amp;/g, "&");
  return { elements, text: decode(texts.join("\n")) };
}

describe("the strict XML checker (its own negative controls)", () => {
  it("accepts a well-formed document", () => {
    expect(parseXml(`<svg a="1"><g><text>a &amp; b</text></g><rect/></svg>`).elements).toEqual(["svg", "g", "text", "rect"]);
  });
  it.each([
    ["an unclosed tag", `<svg><g></svg>`],
    ["crossed tags", `<svg><g><text></g></text></svg>`],
    ["a bare &", `<svg><text>a & b</text></svg>`],
    ["a raw < in an attribute", `<svg><g a="x<y"/></svg>`],
    ["an unquoted attribute", `<svg><g a=1/></svg>`],
    ["a duplicate attribute", `<svg><g a="1" a="2"/></svg>`],
    ["two roots", `<svg/><svg/>`],
    ["text outside the root", `<svg/>junk`],
  ])("rejects %s", (_what, doc) => {
    expect(() => parseXml(doc)).toThrow();
  });
});

describe.each(listRecipes())("graph of %s", (name) => {
  const recipe = loadRecipe(name);
  const plan = makePlan(recipe, "default", resolveOptions(recipe, {}), "graph-test");

  it("is well-formed SVG that names every node, its container and address, and every network", () => {
    const svg = topologySvg(recipe);
    const { elements, text } = parseXml(svg);
    expect(elements[0]).toBe("svg");
    expect(svg).toMatch(/^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    expect(Object.keys(plan.nodes).length).toBeGreaterThan(0);
    for (const n of Object.values(plan.nodes)) {
      expect(text, `node ${n.key}`).toContain(n.key);
      expect(text, `container of ${n.key}`).toContain(n.container);
      for (const ip of Object.values(n.ip)) expect(text, `address of ${n.key}`).toContain(ip);
    }
    for (const net of Object.values(plan.networks)) {
      expect(text, `network ${net.key}`).toContain(net.key);
      expect(text, `subnet of ${net.key}`).toContain(net.subnet);
    }
  });

  it("marks the running nodes, and only those, when states are given", () => {
    const [first, ...others] = Object.keys(plan.nodes);
    const states = Object.fromEntries([[first!, "running"], ...others.map((k) => [k, "exited"])]);
    const plain = topologySvg(recipe, plan);
    expect(plain).not.toContain("data-state=");
    const svg = topologySvg(recipe, plan, states);
    parseXml(svg);
    expect(svg).toContain(`data-node="${first}" data-state="running"`);
    for (const k of others) expect(svg).toContain(`data-node="${k}" data-state="exited"`);
    expect(svg.match(/data-state="running"/g)).toHaveLength(1);
  });

  it("as mermaid names every node, its container, and every network", () => {
    const m = topologyMermaid(recipe);
    expect(m.split("\n")[0]).toBe("flowchart LR");
    for (const n of Object.values(plan.nodes)) {
      expect(m, `node ${n.key}`).toContain(n.key);
      expect(m, `container of ${n.key}`).toContain(n.container);
    }
    for (const net of Object.values(plan.networks)) expect(m).toContain(`${net.key} ${net.subnet}`);
    // Every line inside a subgraph or edge is balanced: brackets and quotes pair up.
    for (const line of m.split("\n")) expect((line.match(/"/g) ?? []).length % 2, line).toBe(0);
  });
});
