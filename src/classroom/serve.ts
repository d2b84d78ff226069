import type { FastifyInstance } from "fastify";
import { UserError } from "../errors.ts";
import { LabSeats, type SeatBackend } from "./backend.ts";
import type { ClassEngines } from "./engines.ts";
import { LiveClass } from "./live.ts";
import { renderGuide } from "./pages.ts";
import { ClassProgress, surveySeat } from "./progress.ts";
import { forEachBounded } from "./seats.ts";
import { buildServer } from "./server.ts";
import { type ClassState, type Seat, seatLabel } from "./state.ts";

export interface ServeOptions {
  /** Address to listen on (0.0.0.0: every interface, so the class can reach it). */
  listen: string;
  port: number;
  /** Seconds between two surveys of every seat for the facilitator's view; 0: only when attendees check. */
  sweepS: number;
  log: (line: string) => void;
}

export interface Serving {
  app: FastifyInstance;
  progress: ClassProgress;
  close(): Promise<void>;
}

/**
 * Survey seats one or two at a time (each survey runs every exercise's check in that seat's
 * containers) and record what is seen; a seat whose lab is down is shown as such.
 */
export async function surveySeats(backend: SeatBackend, progress: ClassProgress, seats: Seat[], signal: AbortSignal): Promise<void> {
  await forEachBounded(seats, 2, async (seat) => surveySeat(backend, progress, seat), signal);
}

/** Serve the class: the web server on `listen:port`, and a survey of every seat now and every `sweepS` seconds. */
export async function serveClass(engines: ClassEngines, state: ClassState, o: ServeOptions): Promise<Serving> {
  const live = new LiveClass(state);
  const backend = new LabSeats(engines, state.recipe, state.options, () => live.current());
  const progress = new ClassProgress(
    state.name,
    state.recipe,
    backend.recipe.exercises.map((e) => ({ id: e.id, title: e.title, solvable: e.solve.length > 0 })),
    state.seats.map((s) => s.n),
  );
  const stop = new AbortController();
  const surveys = new Set<Promise<void>>();
  // `classroom add/remove/reset` (or the facilitator's reset button) changed the seats: follow.
  live.onChange((c, now) => {
    progress.setSeats(now.seats.map((s) => s.n));
    for (const s of c.reset) progress.forget(s.n);
    for (const [what, seats] of Object.entries(c)) for (const s of seats) o.log(`seat ${seatLabel(s.n)} ${what}`);
    const survey = surveySeats(backend, progress, [...c.added, ...c.reset], stop.signal).finally(() => surveys.delete(survey));
    surveys.add(survey);
  });
  live.watch();
  const app = await buildServer({ state, live, backend, progress, guideHtml: await renderGuide(state.recipe), log: o.log });
  try {
    await app.listen({ host: o.listen, port: o.port });
  } catch (e) {
    live.close();
    await app.close();
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EADDRINUSE") throw new UserError(`Port ${o.port} on ${o.listen} is already in use; choose another with --port.`);
    if (code === "EADDRNOTAVAIL") throw new UserError(`${o.listen} is not an address of this machine; choose another with --listen.`, 2);
    throw e;
  }
  const sweeps = (async () => {
    while (!stop.signal.aborted) {
      progress.recordEngines(await engines.health(live.current().seats));
      await surveySeats(backend, progress, live.current().seats, stop.signal);
      if (!o.sweepS) return;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, o.sweepS * 1000);
        stop.signal.addEventListener(
          "abort",
          () => {
            clearTimeout(t);
            resolve();
          },
          { once: true },
        );
      });
    }
  })();
  return {
    app,
    progress,
    close: async () => {
      stop.abort();
      live.close();
      await app.close();
      await sweeps;
      await Promise.all([...surveys]);
    },
  };
}
