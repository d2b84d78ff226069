import { existsSync } from "node:fs";
import { UserError } from "../errors.ts";

export const TUN = "/dev/net/tun";

/**
 * Where a device a container asks for lives on this host. WG3_TUN_DEVICE replaces the path
 * checked for /dev/net/tun, so a test can stand in a missing device without unloading a module.
 */
export function hostDevicePath(device: string): string {
  return device === TUN && process.env.WG3_TUN_DEVICE ? process.env.WG3_TUN_DEVICE : device;
}

/** The sentence for a missing device, saying what needs it and how to get it. */
export function missingDeviceSentence(device: string): string {
  const path = hostDevicePath(device);
  return device === TUN
    ? `${path} is missing on this host, and WireGuard (wireguard-go) and tailscaled need it; run \`sudo modprobe tun\`, or enable TUN devices for this VM or container.`
    : `${path} is missing on this host, and a container of this lab needs it.`;
}

/** Throw one sentence when a device the containers will be given does not exist on the host. */
export function requireHostDevices(devices: Iterable<string>): void {
  for (const d of new Set(devices)) if (!existsSync(hostDevicePath(d))) throw new UserError(missingDeviceSentence(d));
}
