import { probe } from "../engine/connect.ts";
import { Engine } from "../engine/engine.ts";
import { UserError } from "../errors.ts";
import { ensureImages, type ImageRole, imageRef } from "../images/build.ts";
import { type Progress, stepper } from "../ui/progress.ts";
import type { ClassState, Seat } from "./state.ts";

/** An engine of a class, as the facilitator sees it. */
export interface EngineHealth {
  host: string;
  ok: boolean;
  /** podman 4.3.1, or why it does not answer. */
  detail: string;
  seats: number[];
}

/**
 * The engines a class's seats are placed on: the one `classroom up` found first, then the
 * class's `--engines` (each a DOCKER_HOST: a unix socket, possibly forwarded from another
 * machine with `ssh -L`, or tcp://). A seat stays on the engine it was placed on; a seat with
 * none recorded is on the first.
 */
export class ClassEngines {
  private constructor(private readonly byHost: Map<string, Engine>) {}

  /** Open every engine the class names, each checked to answer. */
  static async open(state: ClassState, first: Engine): Promise<ClassEngines> {
    const byHost = new Map<string, Engine>([[first.dockerHost, first]]);
    for (const host of state.engines ?? []) if (!byHost.has(host)) byHost.set(host, await engineAt(host));
    return new ClassEngines(byHost);
  }

  /** One engine only (tests, and classes made before engines were a choice). */
  static single(engine: Engine): ClassEngines {
    return new ClassEngines(new Map([[engine.dockerHost, engine]]));
  }

  get first(): Engine {
    return [...this.byHost.values()][0]!;
  }

  all(): Engine[] {
    return [...this.byHost.values()];
  }

  of(seat: Pick<Seat, "engine">): Engine {
    return (seat.engine && this.byHost.get(seat.engine)) || this.first;
  }

  /** Put each of `fresh` on the engine with the fewest seats so far (the first on a tie). */
  place(fresh: Seat[], existing: Seat[] = []): void {
    const count = new Map(this.all().map((e) => [e.dockerHost, 0]));
    const add = (host: string) => count.set(host, (count.get(host) ?? 0) + 1);
    for (const s of existing) add(this.of(s).dockerHost);
    for (const s of fresh) {
      const [host] = [...count].reduce((best, c) => (c[1] < best[1] ? c : best));
      s.engine = host;
      add(host);
    }
  }

  /** The images `roles` on every engine: built once where needed on the first, copied to the others. */
  async ensureImages(roles: ImageRole[], progress?: Progress, signal?: AbortSignal): Promise<void> {
    const made = await ensureImages(this.first, roles, progress, signal);
    const refs = [...made.reused, ...made.built].map(imageRef); // each archive carries all its layers
    for (const other of this.all().slice(1)) {
      for (const ref of refs) {
        if (signal?.aborted) throw new UserError("Interrupted while copying the images to the class's engines.", 130);
        if (await other.imageExists(ref)) continue;
        await stepper(progress)(`copy image ${ref} to ${other.dockerHost}`, () => this.first.copyImageTo(other, ref));
      }
    }
  }

  /** Each engine: does it answer, and which seats it holds. */
  async health(seats: Seat[]): Promise<EngineHealth[]> {
    return Promise.all(
      this.all().map(async (e) => {
        const p = await probe({ dockerHost: e.dockerHost, source: "class" }, 3000);
        return {
          host: e.dockerHost,
          ok: p.state === "alive",
          detail: p.state === "alive" ? `${p.kind} ${p.version}` : (p.reason ?? p.state),
          seats: seats.filter((s) => this.of(s) === e).map((s) => s.n),
        };
      }),
    );
  }
}

/** The engine at `host`, or one sentence saying it does not answer. */
export async function engineAt(host: string): Promise<Engine> {
  if (!/^(unix|tcp):\/\//.test(host))
    throw new UserError(`Engine "${host}" is not a DOCKER_HOST this harness speaks: use unix:///path/to.sock or tcp://HOST:PORT.`, 2);
  const p = await probe({ dockerHost: host, source: "--engines" });
  if (p.state !== "alive")
    throw new UserError(`The engine at ${host} does not answer (${p.reason ?? p.state}); start it, or leave it out of --engines.`);
  return Engine.of(p);
}

/** `--engines a,b`: the hosts, each once. */
export function parseEngines(value: string | boolean | undefined): string[] {
  if (value === undefined) return [];
  if (typeof value !== "string" || !value.trim()) throw new UserError("--engines needs a comma-separated list of DOCKER_HOSTs.", 2);
  return [
    ...new Set(
      value
        .split(",")
        .map((h) => h.trim())
        .filter(Boolean),
    ),
  ];
}
