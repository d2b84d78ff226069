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

/** Bytes of the Frame_Content_Size field, by its flag (Single_Segment makes flag 0 mean 1 byte). */
const FCS_BYTES = [0, 2, 4, 8];

/**
 * The content of one zstd frame made only of raw and RLE blocks (what zstdStored writes), or
 * undefined for anything else (compressed blocks, a dictionary, more than one frame, a size that
 * does not add up): that needs a real decompressor, which also reports what is wrong. A single
 * raw block comes back as a view into `frame`, without a copy. The checksum, if any, is not
 * verified (fzstd does not verify it either).
 */
export function storedContent(frame: Uint8Array): Uint8Array | undefined {
  if (frame.length < 6 || frame[0] !== 0x28 || frame[1] !== 0xb5 || frame[2] !== 0x2f || frame[3] !== 0xfd) return undefined;
  const fhd = frame[4]!;
  const singleSegment = (fhd & 0x20) !== 0;
  const checksum = (fhd & 0x04) !== 0;
  if (fhd & 0x08 || fhd & 0x03) return undefined; // reserved bit, dictionary
  const fcsFlag = fhd >> 6;
  const fcsBytes = fcsFlag === 0 && singleSegment ? 1 : FCS_BYTES[fcsFlag]!;
  let o = 5 + (singleSegment ? 0 : 1);
  if (o + fcsBytes > frame.length) return undefined;
  let size: number | undefined;
  if (fcsBytes === 1) size = frame[o];
  else if (fcsBytes === 2) size = frame[o]! + (frame[o + 1]! << 8) + 256;
  else if (fcsBytes === 4) size = (frame[o]! | (frame[o + 1]! << 8) | (frame[o + 2]! << 16)) + frame[o + 3]! * 2 ** 24;
  else if (fcsBytes === 8) return undefined; // a frame over 4 GiB is not a map message
  o += fcsBytes;
  const blocks: { type: number; at: number; size: number }[] = [];
  let total = 0;
  for (let last = false; !last; ) {
    if (o + 3 > frame.length) return undefined;
    const head = frame[o]! | (frame[o + 1]! << 8) | (frame[o + 2]! << 16);
    last = (head & 1) === 1;
    const type = (head >> 1) & 3;
    const n = head >>> 3;
    o += 3;
    if (type > 1) return undefined;
    const stored = type === 0 ? n : 1;
    if (o + stored > frame.length) return undefined;
    blocks.push({ type, at: o, size: n });
    total += n;
    o += stored;
  }
  if (o + (checksum ? 4 : 0) !== frame.length) return undefined;
  if (size !== undefined && size !== total) return undefined;
  if (blocks.length === 1 && blocks[0]!.type === 0) return frame.subarray(blocks[0]!.at, blocks[0]!.at + total);
  const out = new Uint8Array(total);
  let w = 0;
  for (const b of blocks) {
    if (b.type === 0) out.set(frame.subarray(b.at, b.at + b.size), w);
    else out.fill(frame[b.at]!, w, w + b.size);
    w += b.size;
  }
  return out;
}
