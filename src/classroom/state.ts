import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { UserError } from "../errors.ts";
import { stateDir } from "../paths.ts";

/** How many seats one class may have: two digits in a seat's lab name, and one /24 per network each. */
export const MAX_SEATS = 99;

export const DEFAULT_CLASS = "seat";

export interface Seat {
  /** 1-based; shown as two digits (seat 03). */
  n: number;
  /** The seat's own lab (`--lab <class>-NN`). */
  lab: string;
  /** Opens this seat's attendee view, and nothing else. */
  token: string;
  /** The engine its lab runs on (a DOCKER_HOST of the class's engines); none: the first. */
  engine?: string;
  /** When its lab was last brought back fresh (`classroom reset`): a running server then surveys it anew. */
  resetAt?: string;
}

/** One class: its seats and secrets. Stored 0600 under .state/classroom/<class>/, never printed whole. */
export interface ClassState {
  name: string;
  recipe: string;
  options: Record<string, string>;
  createdAt: string;
  /** Opens the facilitator view. */
  facilitatorSecret: string;
  seats: Seat[];
  /** More engines for the seats, besides the one found as for any lab (`classroom up --engines`). */
  engines?: string[];
  /** The web server while it runs (`classroom up`). */
  server?: { pid: number; url: string };
}

/** A class name becomes the prefix of its seats' lab names (<name>-NN), which are at most 20 characters. */
export function validClassName(name: string): string {
  if (!/^[a-z0-9][a-z0-9-]{0,16}$/.test(name))
    throw new UserError(`Class name "${name}" is not valid: use up to 17 lowercase letters, digits and dashes.`, 2);
  return name;
}

export function seatLabel(n: number): string {
  return String(n).padStart(2, "0");
}

export function seatLab(className: string, n: number): string {
  return `${className}-${seatLabel(n)}`;
}

/** A secret nobody can guess from the seat number: 144 random bits, URL-safe. */
export function newToken(): string {
  return randomBytes(18).toString("base64url");
}

export function parseSeatCount(value: string | boolean | undefined): number {
  const n = Number(value);
  if (value === undefined || typeof value === "boolean" || !/^\d+$/.test(String(value)) || n < 1 || n > MAX_SEATS)
    throw new UserError(`--seats needs a number of seats from 1 to ${MAX_SEATS}${value === undefined ? "" : `, not "${value}"`}.`, 2);
  return n;
}

/** A seat named on the command line or in a URL: 1 to 99, written 7 or 07. */
export function parseSeatNumber(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d{1,2}$/.test(value) || Number(value) < 1) return undefined;
  return Number(value);
}

/** The seat with this number, or undefined. */
export function seatOf(state: Pick<ClassState, "seats">, n: number): Seat | undefined {
  return state.seats.find((s) => s.n === n);
}

/** The lowest seat number no seat of the class has, or undefined when all 99 are taken. */
export function nextFreeSeat(state: Pick<ClassState, "seats">): number | undefined {
  for (let n = 1; n <= MAX_SEATS; n++) if (!seatOf(state, n)) return n;
  return undefined;
}

/** A new seat `n` of the class, with its own token. */
export function newSeat(className: string, n: number): Seat {
  return { n, lab: seatLab(className, n), token: newToken() };
}

export function newClass(name: string, recipe: string, options: Record<string, string>, seats: number): ClassState {
  return {
    name,
    recipe,
    options,
    createdAt: new Date().toISOString(),
    facilitatorSecret: newToken(),
    seats: Array.from({ length: seats }, (_, i) => newSeat(name, i + 1)),
  };
}

/** Equal-time comparison of a secret with what a request sent (hashed first, so lengths never differ). */
export function sameSecret(expected: string, given: unknown): boolean {
  if (typeof given !== "string" || !given) return false;
  const h = (s: string) => createHash("sha256").update(s).digest();
  return timingSafeEqual(h(expected), h(given));
}

/**
 * The seat a request may act on: the seat named in the path, and only when the token is that
 * seat's own. A wrong token, another seat's token or a seat that does not exist all give
 * undefined, so a caller answers them the same way (403) and learns nothing.
 */
export function authorizeSeat(state: Pick<ClassState, "seats">, seatParam: unknown, token: unknown): Seat | undefined {
  const n = typeof seatParam === "string" ? (parseSeatNumber(seatParam) ?? Number.NaN) : Number.NaN;
  let found: Seat | undefined;
  // Compare against every seat's token, so the time taken does not tell which seats exist.
  for (const s of state.seats) if (sameSecret(s.token, token) && s.n === n) found = s;
  return found;
}

export function isFacilitator(state: Pick<ClassState, "facilitatorSecret">, key: unknown): boolean {
  return sameSecret(state.facilitatorSecret, key);
}

export function classDir(name: string): string {
  return join(stateDir(), "classroom", name);
}

export function classFile(name: string): string {
  return join(classDir(name), "class.json");
}

/**
 * Written 0600 in a 0700 folder: it holds every seat's token and the facilitator's secret.
 * Written aside and renamed into place, so that a running server reading it never sees half.
 */
export function saveClass(state: ClassState): void {
  mkdirSync(classDir(state.name), { recursive: true, mode: 0o700 });
  chmodSync(classDir(state.name), 0o700);
  const tmp = `${classFile(state.name)}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, classFile(state.name));
}

/** Change the stored class by `fn`, from what is on disk now (another process may have changed it). */
export function updateClass(name: string, fn: (state: ClassState) => void): ClassState | undefined {
  const state = readClass(name);
  if (!state) return undefined;
  fn(state);
  saveClass(state);
  return state;
}

export function readClass(name: string): ClassState | undefined {
  const f = classFile(name);
  return existsSync(f) ? (JSON.parse(readFileSync(f, "utf8")) as ClassState) : undefined;
}

export function deleteClass(name: string): void {
  rmSync(classDir(name), { recursive: true, force: true });
}

export function listClasses(): string[] {
  const dir = join(stateDir(), "classroom");
  return existsSync(dir) ? readdirSync(dir).filter((d) => existsSync(classFile(d))) : [];
}

/** The attendee's URL of one seat (carries its token: printed only when the facilitator asks). */
export function joinUrl(base: string, seat: Seat): string {
  return `${base}/seat/${seatLabel(seat.n)}?token=${seat.token}`;
}

export function facilitatorUrl(base: string, state: ClassState): string {
  return `${base}/?key=${state.facilitatorSecret}`;
}
