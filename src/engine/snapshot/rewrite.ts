// Module rewrites for Wizer-style snapshots.
//
// At prepare time a guest is instantiated once, initialised once, and its
// linear memory and mutable globals are captured (see image.ts). Two
// rewrites make that possible in V8, where nothing but exports is visible
// from outside an instance:
//
// - `exposeGlobals` exports every mutable global the module defines as
//   `kiln:global:<index>`, so the host can read them after init and set them
//   on every restored instance. (`exposeTables` does the same for tables, for
//   the snapshot-time instance only: see its comment.)
// - `toRestorable` turns the result into the module every cold start
//   instantiates: its one memory becomes an import (`kiln` `memory`), so an
//   instance can take a pooled, already-touched memory; its active data
//   segments become passive and empty and its start section goes, because
//   the snapshot already holds what they did. Function, table, global and
//   data-segment indices never move, so code and element segments are copied
//   through untouched.
//
// Order with the other rewriters: cap the memory (memory-cap.ts) before
// `toRestorable`, which removes the memory section that capMemory edits.
// Fuel instrumentation may run before or after; before is what prepare
// does, so the fuel global's value after init is captured like any other.

import { readLimits, SECTION } from '../wasm/module-info.js';
import { Reader, readPreamble, readSections, skipValType, Writer, type Section } from '../wasm/reader.js';
import { skipConstExpr } from '../fuel/opcodes.js';

/** Why a module cannot be snapshotted (or restored) correctly. Thrown at prepare time, never at a cold start. */
export class SnapshotError extends Error {
  readonly code = 'SNAPSHOT_UNSUPPORTED';
  constructor(message: string) {
    super(message);
    this.name = 'SnapshotError';
  }
}

export type GlobalType = 'i32' | 'i64' | 'f32' | 'f64';

/** A mutable global the host saves after init and sets on every restored instance. */
export interface GlobalSlot {
  /** Index in the module's global index space. */
  index: number;
  type: GlobalType;
  /** Name of the export that reaches it: `kiln:global:<index>`. */
  exportName: string;
}

/** A table exported for the snapshot-time check that init left it unchanged. */
export interface TableSlot {
  /** Index in the module's table index space (imported tables first). */
  index: number;
  /** `kiln:table:<index>`. */
  exportName: string;
}

export const GLOBAL_EXPORT_PREFIX = 'kiln:global:';
export const TABLE_EXPORT_PREFIX = 'kiln:table:';
/** The import a restorable module takes its memory from. */
export const MEMORY_IMPORT = { module: 'kiln', name: 'memory' } as const;

const KIND = { func: 0, table: 1, memory: 2, global: 3, tag: 4 } as const;
const KIND_NAMES = ['function', 'table', 'memory', 'global', 'tag'];
const NUMERIC_TYPES: Record<number, GlobalType> = { 0x7f: 'i32', 0x7e: 'i64', 0x7d: 'f32', 0x7c: 'f64' };
const TYPE_NAMES: Record<number, string> = { 0x7b: 'v128', 0x70: 'funcref', 0x6f: 'externref', 0x63: 'a typed reference', 0x64: 'a typed reference' };

/** Where each section sits in the module's required order (custom sections may go anywhere). */
const SECTION_RANK: Record<number, number> = { 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13 };

interface ParsedModule {
  bytes: Uint8Array;
  sections: Section[];
  importedFuncs: number;
  importedTables: number;
  importedMemories: number;
  /** Imported globals, by name, for the error message. */
  importedGlobals: string[];
  definedTables: number;
  definedMemories: number;
  exports: Array<{ name: string; kind: number; index: number }>;
}

function requireCore(module: Uint8Array): void {
  if (readPreamble(module) !== 'core') {
    throw new SnapshotError('expected a core WebAssembly module; this is a component (split it into core modules first)');
  }
}

function skipTableType(r: Reader): void {
  skipValType(r);
  readLimits(r);
}

function parse(module: Uint8Array): ParsedModule {
  requireCore(module);
  const m: ParsedModule = {
    bytes: module,
    sections: readSections(module),
    importedFuncs: 0,
    importedTables: 0,
    importedMemories: 0,
    importedGlobals: [],
    definedTables: 0,
    definedMemories: 0,
    exports: [],
  };
  for (const s of m.sections) {
    const r = new Reader(module, s.start, s.end);
    if (s.id === SECTION.import) {
      for (let n = r.u32(); n > 0; n--) {
        const from = r.name();
        const name = r.name();
        const kind = r.u8();
        if (kind === KIND.func) {
          r.u32();
          m.importedFuncs++;
        } else if (kind === KIND.table) {
          skipTableType(r);
          m.importedTables++;
        } else if (kind === KIND.memory) {
          readLimits(r);
          m.importedMemories++;
        } else if (kind === KIND.global) {
          skipValType(r);
          r.u8();
          m.importedGlobals.push(`${from}.${name}`);
        } else if (kind === KIND.tag) {
          r.u8();
          r.u32();
        } else r.fail(`unknown import kind ${kind}`);
      }
    } else if (s.id === SECTION.table) {
      m.definedTables = r.u32();
    } else if (s.id === SECTION.memory) {
      m.definedMemories = r.u32();
    } else if (s.id === SECTION.export) {
      for (let n = r.u32(); n > 0; n--) {
        const name = r.name();
        const kind = r.u8();
        m.exports.push({ name, kind, index: r.u32() });
      }
    }
  }
  return m;
}

/** The export section's contents: the module's exports followed by `extra` (skipping any already present). */
function exportSection(m: ParsedModule, extra: Array<{ name: string; kind: number; index: number }>): Uint8Array {
  const byName = new Map(m.exports.map((e) => [e.name, e]));
  const added = extra.filter((e) => {
    const existing = byName.get(e.name);
    if (!existing) return true;
    if (existing.kind === e.kind && existing.index === e.index) return false; // already exposed (idempotent)
    throw new SnapshotError(
      `the module already exports "${e.name}" as ${KIND_NAMES[existing.kind] ?? 'an unknown kind'} ${existing.index}; ` +
        `names starting with "kiln:" are reserved for Kiln`,
    );
  });
  return encodeExports([...m.exports, ...added]);
}

function encodeExports(entries: ReadonlyArray<{ name: string; kind: number; index: number }>): Uint8Array {
  const w = new Writer();
  w.u32(entries.length);
  const encoder = new TextEncoder();
  for (const e of entries) {
    const name = encoder.encode(e.name);
    w.u32(name.length);
    w.bytes(name);
    w.u8(e.kind);
    w.u32(e.index);
  }
  return w.finish();
}

interface Edit {
  /** Contents for the section, or null to drop it. */
  replace: Map<Section, Uint8Array | null>;
  /** New sections (none of these ids may exist already), placed where the section order wants them. */
  insert: Array<{ id: number; contents: Uint8Array }>;
}

function rebuild(m: ParsedModule, edit: Edit): Uint8Array<ArrayBuffer> {
  const w = new Writer(m.bytes.length + 256);
  w.copy(m.bytes, 0, 8);
  const pending = [...edit.insert].sort((a, b) => SECTION_RANK[a.id]! - SECTION_RANK[b.id]!);
  let headerStart = 8;
  for (const s of m.sections) {
    const rank = SECTION_RANK[s.id];
    while (rank !== undefined && pending.length > 0 && SECTION_RANK[pending[0]!.id]! < rank) {
      const next = pending.shift()!;
      w.section(next.id, next.contents);
    }
    const replacement = edit.replace.get(s);
    if (replacement === undefined) w.copy(m.bytes, headerStart, s.end);
    else if (replacement !== null) w.section(s.id, replacement);
    headerStart = s.end;
  }
  for (const next of pending) w.section(next.id, next.contents);
  return w.finish();
}

function withExports(m: ParsedModule, extra: Array<{ name: string; kind: number; index: number }>): Uint8Array<ArrayBuffer> {
  const old = m.sections.find((s) => s.id === SECTION.export);
  const contents = exportSection(m, extra);
  return old
    ? rebuild(m, { replace: new Map([[old, contents]]), insert: [] })
    : rebuild(m, { replace: new Map(), insert: [{ id: SECTION.export, contents }] });
}

/**
 * Exports every mutable global the module defines as `kiln:global:<index>`
 * (also those it already exports under another name). Refuses imported
 * globals (their values come from outside, so a snapshot could not stand for
 * them; Kiln guests import none) and mutable globals that are not numbers.
 */
export function exposeGlobals(module: Uint8Array): { bytes: Uint8Array<ArrayBuffer>; globals: GlobalSlot[] } {
  const m = parse(module);
  if (m.importedGlobals.length > 0) {
    throw new SnapshotError(
      `the module imports ${m.importedGlobals.length === 1 ? 'a global' : 'globals'} (${m.importedGlobals.join(', ')}); ` +
        'Kiln snapshots only modules that define all their globals',
    );
  }
  const globals: GlobalSlot[] = [];
  const section = m.sections.find((s) => s.id === SECTION.global);
  if (section) {
    const r = new Reader(module, section.start, section.end);
    const count = r.u32();
    for (let index = 0; index < count; index++) {
      const code = r.bytes[r.offset]!;
      skipValType(r);
      const mutable = r.u8() === 0x01;
      skipConstExpr(r);
      if (!mutable) continue;
      const type = NUMERIC_TYPES[code];
      if (!type) {
        throw new SnapshotError(
          `global ${index} is a mutable ${TYPE_NAMES[code] ?? `0x${code.toString(16)}`} global; ` +
            'Kiln snapshots mutable globals of type i32, i64, f32 and f64 only',
        );
      }
      globals.push({ index, type, exportName: `${GLOBAL_EXPORT_PREFIX}${index}` });
    }
  }
  const bytes = withExports(
    m,
    globals.map((g) => ({ name: g.exportName, kind: KIND.global, index: g.index })),
  );
  return { bytes, globals };
}

/**
 * Exports every table (imported or defined) as `kiln:table:<index>`, so the
 * host can check that init left them as instantiation made them
 * (image.ts: captureTables, checkTablesUnchanged). Use it on the module
 * instantiated at snapshot time only: an exported table counts as mutable
 * from outside, which would cost a fuel-instrumented module its fast
 * indirect calls if it were instrumented afterwards.
 */
export function exposeTables(module: Uint8Array): { bytes: Uint8Array<ArrayBuffer>; tables: TableSlot[] } {
  const m = parse(module);
  const tables: TableSlot[] = [];
  for (let index = 0; index < m.importedTables + m.definedTables; index++) {
    tables.push({ index, exportName: `${TABLE_EXPORT_PREFIX}${index}` });
  }
  return { bytes: withExports(m, tables.map((t) => ({ name: t.exportName, kind: KIND.table, index: t.index }))), tables };
}

export interface RestorableOptions {
  /**
   * Keep the bytes of active data segments in the passive segments that
   * replace them. Default false: an active segment is dropped once
   * instantiation has applied it, so an empty passive segment is exactly
   * what the original's code could observe (`memory.init` from it traps
   * unless the length is 0, `data.drop` is a no-op), and the module is
   * smaller.
   */
  keepSegmentBytes?: boolean;
  /**
   * Keep only these exports (and the `kiln:global:*` ones setGlobals needs).
   * Every export costs a restored instance time: V8 builds each exported
   * function's wrapper object at instantiation (≈ 0.5–1 µs each here), which
   * for a guest with a dozen exports is most of a cold start. Default: keep
   * all. A name the module does not export is an error.
   */
  keepExports?: readonly string[];
}

/**
 * The module cold starts instantiate, given exposeGlobals' output:
 * - its one defined memory becomes an import `kiln` `memory` with the same
 *   limits, appended after the other imports (memory imports do not shift
 *   function indices; defined memory 0 becomes imported memory 0). The
 *   `memory` export stays and now re-exports the import.
 * - every active data segment becomes passive, at the same index, so
 *   `memory.init`/`data.drop` stay valid: the snapshot holds their effect.
 *   (Also in a module that imports its memory, such as a component's
 *   adapter: its segments' effect is in the snapshot of the memory it
 *   shares.)
 * - the start section goes: it ran at snapshot time.
 * Tables and element segments are untouched: instantiation rebuilds tables
 * from them, which is why init must not change tables.
 */
export function toRestorable(module: Uint8Array, options: RestorableOptions = {}): Uint8Array<ArrayBuffer> {
  const m = parse(module);
  const replace = new Map<Section, Uint8Array | null>();
  const insert: Edit['insert'] = [];

  if (m.importedMemories + m.definedMemories > 1) {
    throw new SnapshotError(
      `the module has ${m.importedMemories + m.definedMemories} memories (${m.importedMemories} imported, ` +
        `${m.definedMemories} defined); Kiln snapshots modules with one memory`,
    );
  }
  const memorySection = m.sections.find((s) => s.id === SECTION.memory);
  if (memorySection && m.definedMemories === 1) {
    const r = new Reader(module, memorySection.start, memorySection.end);
    r.u32();
    const limitsStart = r.offset;
    const limits = readLimits(r);
    if (limits.shared) throw new SnapshotError('the module defines a shared memory; Kiln snapshots unshared memories only');
    if (limits.memory64) throw new SnapshotError('the module defines a 64-bit memory; Kiln snapshots 32-bit memories only');
    const limitsBytes = module.subarray(limitsStart, r.offset);
    replace.set(memorySection, null);

    // The import section, with `kiln` `memory` appended.
    const w = new Writer();
    const importSection = m.sections.find((s) => s.id === SECTION.import);
    let count = 0;
    let body: Uint8Array = new Uint8Array(0);
    if (importSection) {
      const ir = new Reader(module, importSection.start, importSection.end);
      count = ir.u32();
      body = module.subarray(ir.offset, importSection.end);
    }
    w.u32(count + 1);
    w.bytes(body);
    const encoder = new TextEncoder();
    for (const part of [MEMORY_IMPORT.module, MEMORY_IMPORT.name]) {
      const name = encoder.encode(part);
      w.u32(name.length);
      w.bytes(name);
    }
    w.u8(KIND.memory);
    w.bytes(limitsBytes);
    if (importSection) replace.set(importSection, w.finish());
    else insert.push({ id: SECTION.import, contents: w.finish() });
  }

  const dataSection = m.sections.find((s) => s.id === SECTION.data);
  if (dataSection) {
    const r = new Reader(module, dataSection.start, dataSection.end);
    const w = new Writer(dataSection.end - dataSection.start);
    const count = r.u32();
    w.u32(count);
    for (let i = 0; i < count; i++) {
      const flags = r.u32();
      if (flags === 1) {
        const length = r.u32();
        w.u8(1);
        w.u32(length);
        w.bytes(r.bytesOf(length));
        continue;
      }
      if (flags === 2) {
        const memory = r.u32();
        if (memory !== 0) throw new SnapshotError(`data segment ${i} targets memory ${memory}; Kiln modules have one memory`);
      } else if (flags !== 0) {
        r.fail(`unknown data segment flags ${flags}`);
      }
      skipConstExpr(r);
      const length = r.u32();
      const data = r.bytesOf(length);
      w.u8(1);
      if (options.keepSegmentBytes) {
        w.u32(length);
        w.bytes(data);
      } else {
        w.u32(0);
      }
    }
    if (r.offset !== dataSection.end) r.fail('trailing bytes in the data section');
    replace.set(dataSection, w.finish());
  }

  const start = m.sections.find((s) => s.id === SECTION.start);
  if (start) replace.set(start, null);

  if (options.keepExports) {
    const keep = new Set(options.keepExports);
    const exported = new Set(m.exports.map((e) => e.name));
    const missing = [...keep].filter((name) => !exported.has(name));
    if (missing.length > 0) {
      throw new SnapshotError(`keepExports names ${missing.map((n) => `"${n}"`).join(', ')}, which the module does not export`);
    }
    const exportSectionAt = m.sections.find((s) => s.id === SECTION.export);
    const kept = m.exports.filter((e) => keep.has(e.name) || e.name.startsWith(GLOBAL_EXPORT_PREFIX));
    if (exportSectionAt) replace.set(exportSectionAt, encodeExports(kept));
  }

  return rebuild(m, { replace, insert });
}
