// Caps a module's linear memory at the function's configured limit by
// rewriting the memory section's maximum: past it, memory.grow returns -1 and
// the guest sees out-of-memory instead of taking the daemon's memory.
import { readLimits, SECTION } from './module-info.js';
import { Reader, readSections, WasmFormatError, writeU32 } from './reader.js';

export const WASM_PAGE_BYTES = 65536;

export class MemoryCapError extends Error {}

export function capMemory(bytes: Uint8Array, maxPages: number): Uint8Array {
  const section = readSections(bytes).find((s) => s.id === SECTION.memory);
  if (!section) return bytes;
  const reader = new Reader(bytes, section.start, section.end);
  const count = reader.u32();
  if (count !== 1) throw new MemoryCapError(`module defines ${count} memories; Kiln guests have exactly one`);
  const limits = readLimits(reader);
  if (limits.shared || limits.memory64) throw new MemoryCapError('shared and 64-bit memories are not supported');
  if (reader.offset !== section.end) throw new WasmFormatError('trailing bytes in the memory section', reader.offset);
  if (limits.min > maxPages) {
    throw new MemoryCapError(
      `the module needs ${limits.min} pages (${(limits.min * WASM_PAGE_BYTES) / 2 ** 20} MiB) at start; the memory limit allows ${maxPages}`,
    );
  }
  const max = Math.min(limits.max ?? maxPages, maxPages);
  const body: number[] = [];
  writeU32(body, 1);
  body.push(0x01);
  writeU32(body, limits.min);
  writeU32(body, max);
  const header: number[] = [SECTION.memory];
  writeU32(header, body.length);
  // Where the section began: its id byte, before the size's LEB128.
  const sectionStart = findSectionStart(bytes, section.start);
  const out = new Uint8Array(sectionStart + header.length + body.length + (bytes.length - section.end));
  out.set(bytes.subarray(0, sectionStart), 0);
  out.set(header, sectionStart);
  out.set(body, sectionStart + header.length);
  out.set(bytes.subarray(section.end), sectionStart + header.length + body.length);
  return out;
}

/** The offset of a section's id byte, given where its contents start. */
function findSectionStart(bytes: Uint8Array, contentStart: number): number {
  let offset = contentStart - 1;
  // Walk back over the size LEB128: its last byte has the high bit clear, the others set.
  while (offset > 8 && (bytes[offset - 1]! & 0x80) !== 0) offset--;
  return offset - 1;
}
