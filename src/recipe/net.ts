/** IPv4 arithmetic for subnets and addresses (no IPv6: the labs' networks are IPv4 only). */

export function ipToInt(ip: string): number {
  return ip.split(".").reduce((acc, o) => acc * 256 + Number(o), 0);
}

export function intToIp(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join(".");
}

function range(cidr: string): readonly [number, number] {
  const [base, bits] = cidr.split("/");
  const size = 2 ** (32 - Number(bits));
  const start = Math.floor(ipToInt(base!) / size) * size;
  return [start, start + size - 1];
}

export function ipInCidr(ip: string, cidr: string): boolean {
  const [start, end] = range(cidr);
  const n = ipToInt(ip);
  return n >= start && n <= end;
}

export function cidrsOverlap(a: string, b: string): boolean {
  const [a0, a1] = range(a);
  const [b0, b1] = range(b);
  return a0 <= b1 && b0 <= a1;
}
