/**
 * Map responses travel as zstd frames (the client always decodes them). The server writes
 * "stored" frames: valid zstd made of raw (uncompressed) blocks, which needs no compressor.
 * Layout (RFC 8878): magic, Frame_Header_Descriptor 0xA0 (single segment, 4-byte content
 * size, no checksum), content size (u32 LE), then blocks with a 3-byte LE header
 * `size << 3 | type(0 = raw) << 1 | last`.
 */
const MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
const MAX_BLOCK = 128 * 1024;

export function zstdStored(data: Uint8Array): Buffer {
  const blocks = Math.max(1, Math.ceil(data.length / MAX_BLOCK));
  const out = Buffer.alloc(4 + 1 + 4 + blocks * 3 + data.length);
  MAGIC.copy(out, 0);
  out[4] = 0xa0;
  out.writeUInt32LE(data.length, 5);
  let o = 9;
  for (let i = 0; i < blocks; i++) {
    const chunk = data.subarray(i * MAX_BLOCK, (i + 1) * MAX_BLOCK);
    const last = i === blocks - 1 ? 1 : 0;
    out.writeUIntLE((chunk.length << 3) | last, o, 3);
    out.set(chunk, o + 3);
    o += 3 + chunk.length;
  }
  return out;
}

/** One map-stream message: u32 little-endian length, then the zstd frame of the JSON. */
export function mapFrame(message: unknown): Buffer {
  return mapFrameJson(JSON.stringify(message));
}

/** The same, for a message already serialised (so one encoding can go to many streams). */
export function mapFrameJson(json: string): Buffer {
  const z = zstdStored(Buffer.from(json));
  const head = Buffer.alloc(4);
  head.writeUInt32LE(z.length, 0);
  return Buffer.concat([head, z]);
}
