// The stored form of a prepared function: what prepare produced (the rewritten
// module, and a component's snapshot), so an executor or a restarted daemon
// compiles it instead of preparing again — init runs once per deploy.
//
// Layout, little-endian: "KPRP", format version u32, kind u8, then length-
// prefixed (u32) parts: a JSON header, the module's bytes, the snapshot image.
import type { GuestKind } from '../protocol/methods.js';
import type { GlobalSlot } from './snapshot/rewrite.js';

const MAGIC = 0x5052504b; // "KPRP" read as a little-endian u32
const FORMAT_VERSION = 1;

export interface PreparedParts {
  kind: GuestKind;
  module: Uint8Array;
  /** Components only: the encoded snapshot image, its globals and the memory maximum. */
  snapshot?: { image: Uint8Array; globals: GlobalSlot[]; maxPages: number };
}

export class PreparedFormError extends Error {}

export function encodePrepared(parts: PreparedParts): Uint8Array {
  const header = new TextEncoder().encode(
    JSON.stringify(parts.snapshot ? { globals: parts.snapshot.globals, maxPages: parts.snapshot.maxPages } : {}),
  );
  const image = parts.snapshot?.image ?? new Uint8Array(0);
  const out = new Uint8Array(9 + 12 + header.length + parts.module.length + image.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, MAGIC, true);
  view.setUint32(4, FORMAT_VERSION, true);
  out[8] = parts.kind === 'component' ? 1 : 0;
  let at = 9;
  for (const part of [header, parts.module, image]) {
    view.setUint32(at, part.length, true);
    out.set(part, at + 4);
    at += 4 + part.length;
  }
  return out;
}

export function decodePrepared(bytes: Uint8Array): PreparedParts {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 21 || view.getUint32(0, true) !== MAGIC) throw new PreparedFormError('not a prepared function');
  const version = view.getUint32(4, true);
  if (version !== FORMAT_VERSION) throw new PreparedFormError(`prepared-function format ${version}; this Kiln reads ${FORMAT_VERSION}`);
  const kind: GuestKind = bytes[8] === 1 ? 'component' : 'command';
  const parts: Uint8Array[] = [];
  let at = 9;
  for (let i = 0; i < 3; i++) {
    if (at + 4 > bytes.length) throw new PreparedFormError('truncated prepared function');
    const length = view.getUint32(at, true);
    if (at + 4 + length > bytes.length) throw new PreparedFormError('truncated prepared function');
    parts.push(bytes.subarray(at + 4, at + 4 + length));
    at += 4 + length;
  }
  const [header, module, image] = parts as [Uint8Array, Uint8Array, Uint8Array];
  if (kind === 'command') return { kind, module };
  const { globals, maxPages } = JSON.parse(new TextDecoder().decode(header)) as { globals: GlobalSlot[]; maxPages: number };
  return { kind, module, snapshot: { image, globals, maxPages } };
}
