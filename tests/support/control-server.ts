import { runCli } from "../../src/control/admin-cli.ts";
import type { Engine } from "../../src/engine/engine.ts";

/** A node as `headscale nodes list -o json` prints it (the builtin server's CLI prints the same). */
export interface ControlNode {
  id: number;
  name: string;
  given_name: string;
  ip_addresses: string[];
  online?: boolean;
  approved_routes?: string[];
  available_routes?: string[];
  subnet_routes?: string[];
}

/**
 * What a test asks of a control server, whichever runs: Headscale, or this repository's
 * builtin server (src/control/). A recipe test written against this reads the same for both.
 */
export interface ControlServer {
  /** Where it runs, for messages (a container name, an admin socket). */
  readonly where: string;
  nodes(): Promise<ControlNode[]>;
  onlineNodes(): Promise<ControlNode[]>;
  /** Create a user; returns its id (what createPreAuthKey wants). */
  createUser(name: string): Promise<number>;
  createPreAuthKey(userId: number, opts?: { reusable?: boolean }): Promise<string>;
  approveRoutes(nodeId: number, routes: string[]): Promise<void>;
}

/**
 * Both servers are administered through the same `headscale` command line (JSON output); the
 * drivers differ only in where that command runs.
 */
abstract class HeadscaleCompatibleCli implements ControlServer {
  abstract readonly where: string;
  /** Run `headscale ARGS` against this server; its stdout. */
  protected abstract headscale(args: string[]): Promise<string>;

  private async json<T>(args: string[]): Promise<T> {
    return (JSON.parse(await this.headscale([...args, "-o", "json"])) ?? []) as T;
  }

  nodes(): Promise<ControlNode[]> {
    return this.json<ControlNode[]>(["nodes", "list"]);
  }

  async onlineNodes(): Promise<ControlNode[]> {
    return (await this.nodes()).filter((n) => n.online);
  }

  async createUser(name: string): Promise<number> {
    return Number((await this.json<{ id: number | string }>(["users", "create", name])).id);
  }

  async createPreAuthKey(userId: number, opts: { reusable?: boolean } = {}): Promise<string> {
    const args = ["preauthkeys", "create", "-u", String(userId), ...(opts.reusable ? ["--reusable"] : [])];
    return (await this.json<{ key: string }>(args)).key;
  }

  async approveRoutes(nodeId: number, routes: string[]): Promise<void> {
    await this.headscale(["nodes", "approve-routes", "-i", String(nodeId), "-r", routes.join(",")]);
  }
}

/**
 * The control server of a recipe-3 lab, in its container: Headscale, or with --control builtin
 * the `control` image, whose `headscale` command is the builtin server's admin CLI.
 */
export class HeadscaleInContainer extends HeadscaleCompatibleCli {
  constructor(
    readonly engine: Engine,
    readonly container: string,
  ) {
    super();
  }

  get where(): string {
    return this.container;
  }

  protected headscale(args: string[]): Promise<string> {
    return this.engine.output(this.container, ["headscale", ...args]);
  }
}

/**
 * The builtin server running in this process (tests/integration's HostControl), through the
 * same admin CLI over its admin socket.
 */
export class BuiltinOnHost extends HeadscaleCompatibleCli {
  constructor(readonly adminSocket: string) {
    super();
  }

  get where(): string {
    return this.adminSocket;
  }

  protected headscale(args: string[]): Promise<string> {
    // runCli reads WG3_CONTROL_SOCKET before its first await: set it for this call only.
    const saved = process.env.WG3_CONTROL_SOCKET;
    process.env.WG3_CONTROL_SOCKET = this.adminSocket;
    try {
      return runCli(args);
    } finally {
      if (saved === undefined) delete process.env.WG3_CONTROL_SOCKET;
      else process.env.WG3_CONTROL_SOCKET = saved;
    }
  }
}
