import { appendFileSync } from "node:fs";

/**
 * Progress for long steps. On a TTY: a spinner line per step with elapsed time, replaced by
 * ✓/✗ when it ends. Not on a TTY (CI, scripts): one line per finished step, nothing else.
 * `--verbose` (WG3_VERBOSE=1) additionally streams engine and command output via `detail`.
 */
const FRAMES = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

export interface StepTiming {
  title: string;
  ms: number;
  ok: boolean;
}

function fmt(ms: number): string {
  return ms < 1000 ? `${ms}ms` : `${(ms / 1000).toFixed(1)}s`;
}

interface Active {
  title: string;
  note: string;
  started: number;
}

export class Progress {
  readonly timings: StepTiming[] = [];
  private spinner?: NodeJS.Timeout;
  /** Steps under way, oldest first: nested ones, and setup steps that run side by side. */
  private readonly active: Active[] = [];

  constructor(
    private readonly out: NodeJS.WriteStream = process.stderr,
    readonly verbose = process.env.WG3_VERBOSE === "1",
    readonly silent = process.env.WG3_SILENT === "1",
    /** How info lines read where the person is (the CLI names `./start.ts` as typed from their folder). */
    private readonly phrase: (line: string) => string = (line) => line,
  ) {}

  get tty(): boolean {
    return Boolean(this.out.isTTY) && !this.silent;
  }

  /** Run `fn` as a named step; `note(text)` updates what is being waited on. */
  async step<T>(title: string, fn: (note: (text: string) => void) => Promise<T>): Promise<T> {
    const me: Active = { title, note: "", started: Date.now() };
    this.active.push(me);
    if (this.tty && !this.spinner) this.startSpinner();
    try {
      const result = await fn((text) => {
        me.note = text;
        if (this.verbose) this.detail(`  … ${text}`);
      });
      this.finish(title, me.started, true);
      return result;
    } catch (err) {
      this.finish(title, me.started, false);
      throw err;
    } finally {
      this.active.splice(this.active.indexOf(me), 1);
      if (!this.active.length) this.stopSpinner();
    }
  }

  info(line: string): void {
    if (this.silent) return;
    this.clearLine();
    this.out.write(`${this.phrase(line)}\n`);
  }

  detail(line: string): void {
    if (!this.verbose || this.silent) return;
    this.clearLine();
    this.out.write(`${line.replace(/\n$/, "")}\n`);
  }

  private finish(title: string, started: number, ok: boolean): void {
    const ms = Date.now() - started;
    this.timings.push({ title, ms, ok });
    // For benchmarks (bench/lab-start.ts): one JSON line per finished step, when asked to.
    if (process.env.WG3_TIMINGS_FILE)
      appendFileSync(process.env.WG3_TIMINGS_FILE, `${JSON.stringify({ title, ms, ok, end: Date.now() })}\n`);
    if (this.silent) return;
    this.clearLine();
    const mark = ok ? (this.tty ? "\x1b[32m✓\x1b[0m" : "ok  ") : this.tty ? "\x1b[31m✗\x1b[0m" : "FAIL";
    this.out.write(`${mark} ${title} ${this.tty ? "\x1b[2m" : "("}${fmt(ms)}${this.tty ? "\x1b[0m" : ")"}\n`);
  }

  /** The spinner shows the newest step, and how many others run beside it. */
  private startSpinner(): void {
    let i = 0;
    this.spinner = setInterval(() => {
      const c = this.active.at(-1);
      if (!c) return;
      const frame = FRAMES[i++ % FRAMES.length];
      const others = this.active.length > 1 ? ` \x1b[2m(+${this.active.length - 1} more)\x1b[0m` : "";
      const note = c.note ? ` \x1b[2m${c.note.slice(0, (this.out.columns || 100) - c.title.length - 30)}\x1b[0m` : "";
      this.out.write(`\r\x1b[2K\x1b[36m${frame}\x1b[0m ${c.title}${note}${others} \x1b[2m${fmt(Date.now() - c.started)}\x1b[0m`);
    }, 100);
    this.spinner.unref();
  }

  private stopSpinner(): void {
    if (this.spinner) clearInterval(this.spinner);
    this.spinner = undefined;
    this.clearLine();
  }

  private clearLine(): void {
    if (this.tty) this.out.write("\r\x1b[2K");
  }
}

export const progress = new Progress();

export type Step = <T>(title: string, fn: (note: (text: string) => void) => Promise<T>) => Promise<T>;

/** `progress.step`, or a silent stand-in when a caller passes no progress. */
export function stepper(progress?: Progress): Step {
  return progress ? progress.step.bind(progress) : async (_title, fn) => fn(() => {});
}
