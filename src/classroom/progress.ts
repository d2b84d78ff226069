import { errorMessage } from "../errors.ts";
import type { SeatBackend, SeatTopology } from "./backend.ts";
import type { EngineHealth } from "./engines.ts";
import type { Seat } from "./state.ts";

/** What the facilitator sees of one seat: each exercise's state and when one last turned green. */
export interface SeatProgress {
  seat: number;
  /** exercise id -> pass / not yet; absent until the seat was first checked. */
  exercises: Record<string, "pass" | "not yet">;
  /** When an exercise of this seat last turned from not yet to pass (ISO), if ever. */
  lastGreenAt?: string;
  /** When this seat was last checked (ISO). */
  checkedAt?: string;
  /** Its lab at the last survey: nodes running or not, the Tailscale clients' paths. */
  topology?: SeatTopology;
  /** When the seat was last brought back fresh: its stuck timer counts from then. */
  resetAt?: string;
  /** Why the last check could not run (the lab is down), if it could not. */
  error?: string;
}

export interface ClassSnapshot {
  class: string;
  recipe: string;
  startedAt: string;
  exercises: ExerciseColumn[];
  seats: SeatProgress[];
  /** Where the seats run: each engine, whether it answers, its seats (at the last sweep). */
  engines: EngineHealth[];
}

/** A column of the facilitator's view; `solvable`: it has a reference solution (a solve button). */
export interface ExerciseColumn {
  id: string;
  title: string;
  solvable?: boolean;
}

type Listener = (snapshot: ClassSnapshot) => void;

/**
 * Every seat's progress, kept by the server and sent to the facilitator's view on each change.
 * The first check of a seat is its baseline: exercises that pass then (the lab's setup made
 * them pass) do not count as turning green.
 */
export class ClassProgress {
  #seats = new Map<number, SeatProgress>();
  #engines: EngineHealth[] = [];
  readonly #listeners = new Set<Listener>();

  constructor(
    readonly className: string,
    readonly recipe: string,
    readonly exercises: ExerciseColumn[],
    seats: number[],
    readonly startedAt = new Date().toISOString(),
  ) {
    for (const n of seats) this.#seats.set(n, { seat: n, exercises: {} });
  }

  /** Record a check's results for a seat; listeners hear of it. */
  record(seat: number, results: { id: string; state: "pass" | "not yet" }[], at = new Date()): void {
    const p = this.#seats.get(seat);
    if (!p) return;
    const baseline = !p.checkedAt;
    for (const r of results) {
      if (!baseline && r.state === "pass" && p.exercises[r.id] !== "pass") p.lastGreenAt = at.toISOString();
      p.exercises[r.id] = r.state;
    }
    p.checkedAt = at.toISOString();
    delete p.error;
    this.#emit();
  }

  recordTopology(seat: number, topology: SeatTopology): void {
    const p = this.#seats.get(seat);
    if (!p) return;
    p.topology = topology;
    this.#emit();
  }

  /** The class's seats are now `seats`: rows for new ones, none for seats taken away; listeners hear of it. */
  setSeats(seats: number[]): void {
    for (const n of [...this.#seats.keys()]) if (!seats.includes(n)) this.#seats.delete(n);
    for (const n of seats) if (!this.#seats.has(n)) this.#seats.set(n, { seat: n, exercises: {} });
    this.#seats = new Map([...this.#seats.entries()].sort(([a], [b]) => a - b));
    this.#emit();
  }

  /** A seat brought back fresh: nothing known of it until its next check, which is its new baseline. */
  forget(seat: number, at = new Date()): void {
    if (!this.#seats.has(seat)) return;
    this.#seats.set(seat, { seat, exercises: {}, resetAt: at.toISOString() });
    this.#emit();
  }

  recordEngines(engines: EngineHealth[]): void {
    this.#engines = engines;
    this.#emit();
  }

  recordError(seat: number, error: string, at = new Date()): void {
    const p = this.#seats.get(seat);
    if (!p) return;
    p.error = error;
    p.checkedAt = at.toISOString();
    this.#emit();
  }

  snapshot(): ClassSnapshot {
    return {
      class: this.className,
      recipe: this.recipe,
      startedAt: this.startedAt,
      exercises: this.exercises,
      seats: [...this.#seats.values()].map((s) => ({ ...s, exercises: { ...s.exercises } })),
      engines: this.#engines.map((e) => ({ ...e, seats: [...e.seats] })),
    };
  }

  /** Hear every change; returns the function that stops listening. */
  subscribe(fn: Listener): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  #emit(): void {
    const s = this.snapshot();
    for (const fn of this.#listeners) fn(s);
  }
}

/** Check one seat's exercises and read its topology, for the facilitator's view; a lab that is down is recorded as such. */
export async function surveySeat(backend: SeatBackend, progress: ClassProgress, seat: Seat): Promise<void> {
  try {
    progress.record(seat.n, await backend.survey(seat));
  } catch (e) {
    progress.recordError(seat.n, errorMessage(e));
  }
  try {
    progress.recordTopology(seat.n, await backend.topology(seat));
  } catch {
    // The exercises' error above says why already.
  }
}
