import { LABEL } from "../engine/labels.ts";
import { errorMessage, UserError } from "../errors.ts";
import type { ImageRole } from "../images/build.ts";
import { down, up } from "../lab/lifecycle.ts";
import { loadRecipe } from "../recipe/load.ts";
import { effectiveNodes } from "../recipe/nodes.ts";
import type { Progress } from "../ui/progress.ts";
import type { ClassEngines } from "./engines.ts";
import { removeFirewall, syncFirewall } from "./firewall.ts";
import { type ClassState, deleteClass, newSeat, readClass, type Seat, seatLabel, seatOf, updateClass } from "./state.ts";

/** Run `fn` for every item, at most `limit` at once; no new item starts once `signal` aborts. */
export async function forEachBounded<T>(items: T[], limit: number, fn: (item: T) => Promise<void>, signal?: AbortSignal): Promise<void> {
  const queue = [...items];
  const worker = async () => {
    for (let item = queue.shift(); item !== undefined && !signal?.aborted; item = queue.shift()) await fn(item);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
}

export interface SeatOutcome {
  seat: Seat;
  /** It was running already (a second `classroom up`): nothing was started. */
  already: boolean;
  ms: number;
  error?: string;
}

export interface StartSeatsOptions {
  parallel: number;
  progress: Progress;
  signal?: AbortSignal;
}

/**
 * Start every seat's lab, `parallel` at a time, each one exactly as `./start.ts RECIPE --lab
 * <class>-NN` would, plus the class's label. The images are made once, before any seat, so
 * that seats starting together never build the same image twice. A seat that fails is
 * reported and the others go on.
 */
export async function startSeats(engines: ClassEngines, state: ClassState, o: StartSeatsOptions): Promise<SeatOutcome[]> {
  await engines.ensureImages(imageRoles(state), o.progress, o.signal);
  const outcomes: SeatOutcome[] = [];
  const starting = new Set<string>();
  const n = state.seats.length;
  const title = `start ${n} seat${n === 1 ? "" : "s"} of ${state.recipe}${n > 1 ? ` (${Math.min(o.parallel, n)} at a time)` : ""}`;
  await o.progress.step(title, async (note) => {
    const say = () => note(`${outcomes.length}/${state.seats.length} done${starting.size ? `; starting ${[...starting].join(", ")}` : ""}`);
    await forEachBounded(
      state.seats,
      o.parallel,
      async (seat) => {
        starting.add(seat.lab);
        say();
        const outcome = await startSeat(engines, state, seat, o.signal);
        // Each seat off the host as soon as its bridges exist (they do once its containers run).
        if (!outcome.error) await guardHost(engines, state);
        starting.delete(seat.lab);
        outcomes.push(outcome);
        o.progress.info(describeOutcome(outcome, outcomes.length, state.seats.length));
        say();
      },
      o.signal,
    );
  });
  return outcomes;
}

function imageRoles(state: ClassState): ImageRole[] {
  const recipe = loadRecipe(state.recipe);
  return [...new Set(Object.values(effectiveNodes(recipe, state.options)).map((n) => n.image as ImageRole))];
}

/**
 * Keep the class's seats off the host (firewall.ts): the bridges of seats on an engine on this
 * machine are this machine's interfaces (found by their gateway addresses); a remote engine's
 * host is not ours to change.
 */
export async function guardHost(engines: ClassEngines, state: ClassState): Promise<string[]> {
  if (!engines.all().some((e) => e.dockerHost.startsWith("unix://"))) return [];
  return syncFirewall(state);
}

export async function startSeat(engines: ClassEngines, state: ClassState, seat: Seat, signal?: AbortSignal): Promise<SeatOutcome> {
  const t0 = Date.now();
  try {
    const engine = engines.of(seat);
    const r = await up(state.recipe, { lab: seat.lab, options: state.options, engine, signal, labels: { [LABEL.classroom]: state.name } });
    return { seat, already: r.alreadyRunning, ms: Date.now() - t0 };
  } catch (e) {
    return { seat, already: false, ms: Date.now() - t0, error: errorMessage(e) };
  }
}

function describeOutcome(o: SeatOutcome, done: number, total: number): string {
  const what = o.error ? `FAILED: ${o.error}` : o.already ? "was already running" : `up in ${(o.ms / 1000).toFixed(1)}s`;
  return `  seat ${seatLabel(o.seat.n)} (lab ${o.seat.lab}) ${what}  [${done}/${total}]`;
}

export interface Removed {
  containers: number;
  networks: number;
  volumes: number;
}

/** Remove the given seats' labs (containers, networks, volumes, each lab's state), a few at a time. */
export async function removeSeats(engines: ClassEngines, recipe: string, seats: Seat[]): Promise<Removed> {
  const total: Removed = { containers: 0, networks: 0, volumes: 0 };
  await forEachBounded(seats, 4, async (seat) => {
    const r = await down(engines.of(seat), recipe, seat.lab);
    total.containers += r.removed.containers;
    total.networks += r.removed.networks;
    total.volumes += r.removed.volumes;
  });
  return total;
}

/**
 * Remove the whole class: every seat's lab, then anything else that carries the class's label
 * (a seat whose start was interrupted half-way), then the class's state with its secrets.
 */
export async function removeClass(engines: ClassEngines, state: ClassState): Promise<Removed> {
  const total = await removeSeats(engines, state.recipe, state.seats);
  for (const engine of engines.all()) {
    const rest = await engine.removeLabelled({ classroom: state.name });
    total.containers += rest.containers;
    total.networks += rest.networks;
    total.volumes += rest.volumes;
  }
  await removeFirewall(state.name);
  deleteClass(state.name);
  return total;
}

/**
 * One more seat for a running class: its lab started, the host guarded, and only then the seat
 * (with its new token) written to the class's state, where a running server finds it. A start
 * that fails removes what it made, as any lab start does.
 */
export async function addSeat(
  engines: ClassEngines,
  state: ClassState,
  n: number,
  signal?: AbortSignal,
  progress?: Progress,
): Promise<Seat> {
  const seat = newSeat(state.name, n);
  engines.place([seat], state.seats);
  await engines.ensureImages(imageRoles(state), progress, signal);
  const outcome = await startSeat(engines, state, seat, signal);
  if (outcome.error) throw new UserError(`Seat ${seatLabel(n)} did not start: ${outcome.error}`);
  const saved = updateClass(state.name, (s) => {
    s.seats = [...s.seats.filter((x) => x.n !== n), seat].sort((a, b) => a.n - b.n);
  });
  await guardHost(engines, saved ?? state);
  return seat;
}

/** Take a seat away: its token first (its page then answers 403), then its lab, then its bridges from the firewall. */
export async function removeSeat(engines: ClassEngines, state: ClassState, seat: Seat): Promise<Removed> {
  const saved = updateClass(state.name, (s) => {
    s.seats = s.seats.filter((x) => x.n !== seat.n);
  });
  const r = await removeSeats(engines, state.recipe, [seat]);
  await guardHost(engines, saved ?? state);
  return r;
}

/**
 * Bring a seat's lab back fresh: removed and started again as at `classroom up` (new keys, maybe
 * new subnets), with the same token, so the attendee's URL keeps working. Its `resetAt` tells a
 * running server to forget the seat's progress and survey it anew.
 */
export async function resetSeat(engines: ClassEngines, state: ClassState, seat: Seat, signal?: AbortSignal): Promise<void> {
  await down(engines.of(seat), state.recipe, seat.lab);
  const outcome = await startSeat(engines, state, seat, signal);
  const saved = updateClass(state.name, (s) => {
    const now = seatOf(s, seat.n);
    if (now) now.resetAt = new Date().toISOString();
  });
  await guardHost(engines, saved ?? readClass(state.name) ?? state);
  if (outcome.error) throw new UserError(`Seat ${seatLabel(seat.n)} was removed but did not start again: ${outcome.error}`);
}
