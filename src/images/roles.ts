/**
 * The registry of image roles: one folder in images/ each, optionally a parent and Go binaries,
 * and what every container of that role gets unless its node in recipe.yaml says otherwise.
 * No imports: the recipe loader reads this table without pulling in the image builder.
 */

/** `ip`, `nft` and `wg` need NET_ADMIN; `ping`, `tracepath` and `tcpdump` need NET_RAW, which podman does not grant by default. */
const NET_CAPS = ["NET_ADMIN", "NET_RAW"] as const;
/** wireguard-go and tailscaled create their interface through the TUN device. */
const TUN = ["/dev/net/tun"] as const;

interface RoleSpec {
  parent?: string;
  binaries: readonly ("tailscale" | "headscale" | "wireguard-go")[];
  /** Doc text for recipes/README.md. */
  about: string;
  caps: readonly string[];
  devices: readonly string[];
  sysctls: Readonly<Record<string, string>>;
}

export const IMAGE_ROLES = {
  base: { parent: undefined, binaries: [], about: "Debian with the network tools", caps: NET_CAPS, devices: [], sysctls: {} },
  "wg-peer": {
    parent: "base",
    binaries: ["wireguard-go"],
    about: "a WireGuard peer (wg-quick; wireguard-go, pinned, where the kernel has no module)",
    caps: NET_CAPS,
    devices: TUN,
    sysctls: {},
  },
  webserver: { parent: "base", binaries: [], about: "Caddy serving a test page", caps: NET_CAPS, devices: [], sysctls: {} },
  tailscale: {
    parent: "base",
    binaries: ["tailscale"],
    about: "tailscaled and the tailscale CLI",
    caps: NET_CAPS,
    devices: TUN,
    sysctls: {},
  },
  headscale: { parent: "base", binaries: ["headscale"], about: "the Headscale control server", caps: NET_CAPS, devices: [], sysctls: {} },
  control: { parent: "base", binaries: [], about: "this repo's builtin control server", caps: NET_CAPS, devices: [], sysctls: {} },
  idp: { parent: "base", binaries: [], about: "an OpenID Connect IdP (oidc-provider)", caps: NET_CAPS, devices: [], sysctls: {} },
  router: {
    parent: "base",
    binaries: [],
    about: "a NAT router (nftables, conntrack, miniupnpd)",
    caps: NET_CAPS,
    devices: [],
    sysctls: { "net.ipv4.ip_forward": "1" },
  },
  stun: { parent: "base", binaries: [], about: "a STUN-only server (coturn)", caps: NET_CAPS, devices: [], sysctls: {} },
  acme: {
    parent: "base",
    binaries: [],
    about: "a private ACME CA (pebble), a new root every start; acme-rate-limit puts Let's Encrypt's rate limit in front",
    caps: NET_CAPS,
    devices: [],
    sysctls: {},
  },
  dns: {
    parent: "base",
    binaries: [],
    about: "an authoritative DNS server (dnsmasq), records as files",
    caps: NET_CAPS,
    devices: [],
    sysctls: {},
  },
  "vps-caddy": {
    parent: "headscale",
    binaries: [],
    about: "Headscale plus Debian's Caddy, to put in front of it",
    caps: NET_CAPS,
    devices: [],
    sysctls: {},
  },
  "vps-control": {
    parent: "control",
    binaries: [],
    about: "the builtin control server plus Debian's Caddy, to put in front of it",
    caps: NET_CAPS,
    devices: [],
    sysctls: {},
  },
} as const satisfies Record<string, RoleSpec>;

export type ImageRole = keyof typeof IMAGE_ROLES;

/** The role names, in the registry's order (the schema's enum needs a non-empty tuple). */
export const IMAGE_ROLE_NAMES = Object.keys(IMAGE_ROLES) as [ImageRole, ...ImageRole[]];

export function isImageRole(x: string): x is ImageRole {
  return Object.hasOwn(IMAGE_ROLES, x);
}
