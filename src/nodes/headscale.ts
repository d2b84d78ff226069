import type { Engine } from "../engine/engine.ts";

export interface HsNode {
  id: number;
  name: string;
  given_name: string;
  ip_addresses: string[];
  online?: boolean;
  approved_routes?: string[];
  available_routes?: string[];
  subnet_routes?: string[];
}

/** Headscale in a container, driven through its own CLI (JSON output), as the workshop does. */
export class HeadscaleInContainer {
  constructor(
    readonly engine: Engine,
    readonly container: string,
  ) {}

  private async json<T>(args: string[]): Promise<T> {
    const out = await this.engine.run(this.container, ["headscale", ...args, "-o", "json"]);
    return (JSON.parse(out) ?? []) as T;
  }

  nodes(): Promise<HsNode[]> {
    return this.json<HsNode[]>(["nodes", "list"]);
  }

  async onlineNodes(): Promise<HsNode[]> {
    return (await this.nodes()).filter((n) => n.online);
  }

  routes(): Promise<HsNode[]> {
    return this.json<HsNode[]>(["nodes", "list-routes"]);
  }

  async createUser(name: string): Promise<void> {
    await this.engine.run(this.container, ["headscale", "users", "create", name]);
  }

  async createPreAuthKey(userId: number, opts: { reusable?: boolean } = {}): Promise<string> {
    const out = await this.engine.run(this.container, [
      "headscale",
      "preauthkeys",
      "create",
      "-u",
      String(userId),
      ...(opts.reusable ? ["--reusable"] : []),
    ]);
    return out.trim();
  }

  async approveRoutes(nodeId: number, routes: string[]): Promise<void> {
    await this.engine.run(this.container, ["headscale", "nodes", "approve-routes", "-i", String(nodeId), "-r", routes.join(",")]);
  }
}
