import { readFileSync } from "node:fs";
import { parse } from "yaml";

/**
 * Extra DERP regions from files, as Headscale's `derp.paths`: each file is a DERP map fragment
 * (`regions:` by id) whose keys are tailcfg's field names in lower case (Headscale reads them
 * with a YAML decoder that matches fields case-insensitively). The regions come out as tailcfg
 * JSON, ready to sit beside the embedded region in the map tailscaled gets; a STUN-only region
 * there is how a client gets a second STUN answer and can tell an easy NAT from a hard one.
 */

const REGION_FIELDS = ["RegionID", "RegionCode", "RegionName", "Latitude", "Longitude", "Avoid", "NoMeasureNoHome", "Nodes"];
const NODE_FIELDS = [
  "Name",
  "RegionID",
  "HostName",
  "CertName",
  "IPv4",
  "IPv6",
  "STUNPort",
  "STUNOnly",
  "DERPPort",
  "InsecureForTests",
  "STUNTestIP",
  "CanPort80",
];

export type TailcfgRegion = Record<string, unknown> & { RegionID: number };

type Raw = Record<string, unknown>;
const isObj = (v: unknown): v is Raw => Boolean(v) && typeof v === "object" && !Array.isArray(v);

/** tailcfg's spelling of each lower-case key; an unknown key is an error naming the known ones. */
function tailcfgKeys(raw: Raw, fields: string[], where: string, fail: (m: string) => Error): Raw {
  const byLower = new Map(fields.map((f) => [f.toLowerCase(), f]));
  const out: Raw = {};
  for (const [k, v] of Object.entries(raw)) {
    const f = byLower.get(k.toLowerCase());
    if (!f)
      throw fail(
        `${where}: "${k}" is not a DERP ${fields === NODE_FIELDS ? "node" : "region"} field (known: ${fields.map((x) => x.toLowerCase()).join(", ")})`,
      );
    out[f] = v;
  }
  return out;
}

/** The regions of one fragment's text. `where` names the file in errors. */
export function parseDerpRegions(text: string, where: string, fail: (m: string) => Error): TailcfgRegion[] {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (e) {
    throw fail(`${where}: not valid YAML: ${(e as Error).message}`);
  }
  const regions = isObj(doc) ? doc.regions : undefined;
  if (!isObj(regions)) throw fail(`${where}: want a map "regions:" of DERP regions by id`);
  return Object.entries(regions).map(([id, r]) => {
    if (!isObj(r)) throw fail(`${where}: region ${id} is not a map`);
    const region = tailcfgKeys(r, REGION_FIELDS, `${where}: region ${id}`, fail);
    const regionId = Number(region.RegionID ?? id);
    if (!Number.isInteger(regionId) || regionId <= 0 || String(regionId) !== id)
      throw fail(`${where}: region ${id}: its key and regionid must be the same positive number`);
    const nodes = Array.isArray(region.Nodes) ? region.Nodes : [];
    if (!nodes.length) throw fail(`${where}: region ${id} has no nodes`);
    region.Nodes = nodes.map((n, i) => {
      if (!isObj(n)) throw fail(`${where}: region ${id}, node ${i + 1} is not a map`);
      const node = tailcfgKeys(n, NODE_FIELDS, `${where}: region ${id}, node ${i + 1}`, fail);
      if (!node.HostName) throw fail(`${where}: region ${id}, node ${i + 1} needs a hostname`);
      return { Name: `${id}${String.fromCharCode(97 + i)}`, ...node, RegionID: regionId };
    });
    return { ...region, RegionID: regionId };
  });
}

/** Every file's regions, in the order given. */
export function loadDerpPaths(paths: string[], fail: (m: string) => Error): TailcfgRegion[] {
  return paths.flatMap((p) => {
    let text: string;
    try {
      text = readFileSync(p, "utf8");
    } catch (e) {
      throw fail(`derp.paths: cannot read ${p}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    return parseDerpRegions(text, p, fail);
  });
}
