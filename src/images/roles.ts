/**
 * The registry of image roles: one folder in images/ each, optionally a parent and Go binaries.
 * No imports: the recipe loader reads this table without pulling in the image builder.
 */

interface RoleSpec {
  parent?: string;
  binaries: readonly ("tailscale" | "headscale")[];
  /** Doc text for recipes/README.md. */
  about: string;
}

export const IMAGE_ROLES = {
  base: { parent: undefined, binaries: [], about: "Debian with the network tools" },
  "wg-peer": { parent: "base", binaries: [], about: "a WireGuard peer (wg-quick, wireguard-go)" },
  webserver: { parent: "base", binaries: [], about: "Caddy serving a test page" },
  tailscale: { parent: "base", binaries: ["tailscale"], about: "tailscaled and the tailscale CLI" },
  headscale: { parent: "base", binaries: ["headscale"], about: "the Headscale control server" },
  control: { parent: "base", binaries: [], about: "this repo's builtin control server" },
} as const satisfies Record<string, RoleSpec>;

export type ImageRole = keyof typeof IMAGE_ROLES;

/** The role names, in the registry's order (the schema's enum needs a non-empty tuple). */
export const IMAGE_ROLE_NAMES = Object.keys(IMAGE_ROLES) as [ImageRole, ...ImageRole[]];

export function isImageRole(x: string): x is ImageRole {
  return Object.hasOwn(IMAGE_ROLES, x);
}
