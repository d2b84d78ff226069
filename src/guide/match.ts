/**
 * A guide's expected output against what a command printed. Placeholders stand for what
 * varies between runs; any other `<...>` (HTML in a page, `<port>` in prose) is literal text.
 * Blanks match blanks of any width (`wg show` separates with tabs, markdown shows spaces).
 */
export const PLACEHOLDERS: Record<string, string> = {
  "<key>": "[A-Za-z0-9+/]{43}=",
  "<n>": "\\d+(?:\\.\\d+)?",
  "<ip>": "\\d{1,3}(?:\\.\\d{1,3}){3}",
  // A tailnet address: Tailscale's CGNAT range 100.64.0.0/10, handed out by the coordination server.
  "<100.64.x.y>": "100\\.(?:6[4-9]|[7-9]\\d|1[01]\\d|12[0-7])\\.\\d{1,3}\\.\\d{1,3}",
  "<time>": "[^\\n]+?",
  "<any>": "[^\\n]*?",
};

const literal = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

function lineRegex(line: string): string {
  const names = Object.keys(PLACEHOLDERS).map(literal).join("|");
  return line
    .split(new RegExp(`(${names})`))
    .map((part) => PLACEHOLDERS[part] ?? literal(part).replace(/[ \t]+/g, "[ \\t]+"))
    .join("");
}

/** The expected text as one regex: whole lines, `...` alone on a line stands for any lines (or none). */
export function outputRegex(expected: string): RegExp {
  const lines = expected.replace(/\s+$/, "").split("\n");
  const parts = lines.map((l) => (l.trim() === "..." ? "(?:[^\\n]*\\n)*?" : `[ \\t]*${lineRegex(l.trim())}[ \\t]*\\n`));
  return new RegExp(`^${parts.join("")}$`);
}

/** Does `actual` read as the guide says? Trailing blanks and blank lines are not compared. */
export function outputMatches(expected: string, actual: string): boolean {
  const norm = `${actual
    .replace(/\r/g, "")
    .split("\n")
    .map((l) => l.trimEnd())
    .join("\n")
    .replace(/\n+$/, "")}\n`;
  return outputRegex(expected).test(norm);
}
