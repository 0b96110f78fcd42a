// Snapshots: module rewrites, memory images and the memory pool, on real
// compiled guests (test/guests/*, built by scripts/build-guests.mjs) and a few
// hand-assembled modules. Everything runs in V8; nothing is mocked.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  captureImage,
  captureTables,
  checkTablesUnchanged,
  decodeImage,
  encodeImage,
  nonZeroRanges,
  restoreImage,
  setGlobals,
  type MemoryImage,
} from '../../src/engine/snapshot/image.js';
import { MemoryPool } from '../../src/engine/snapshot/memory-pool.js';
import { exposeGlobals, exposeTables, SnapshotError, toRestorable, type GlobalSlot } from '../../src/engine/snapshot/rewrite.js';
import { readModuleInfo } from '../../src/engine/wasm/module-info.js';
import { readPreamble, readSections, writeU32 } from '../../src/engine/wasm/reader.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const guests = join(root, 'build', 'guests');
const PAGE = 65536;
/** The memory cap the tests give pooled memories (the snapshot guests declare no maximum). */
const MAX_PAGES = 256;

function guest(path: string): Uint8Array<ArrayBuffer> {
  const file = join(guests, path);
  if (!existsSync(file)) throw new Error(`${file} is missing: run node scripts/build-guests.mjs`);
  return new Uint8Array(readFileSync(file));
}

// ---- a tiny assembler ------------------------------------------------------

type Bytes = number[];
const u32 = (n: number): Bytes => {
  const out: Bytes = [];
  writeU32(out, n);
  return out;
};
const vec = (items: Bytes[]): Bytes => [...u32(items.length), ...items.flat()];
const str = (s: string): Bytes => [...u32(s.length), ...Buffer.from(s)];
const section = (id: number, contents: Bytes): Bytes => [id, ...u32(contents.length), ...contents];
const body = (code: Bytes): Bytes => {
  const b = [0x00, ...code, 0x0b]; // no locals
  return [...u32(b.length), ...b];
};
const HEADER = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
const I32 = 0x7f;
const I64 = 0x7e;
const F32 = 0x7d;
const F64 = 0x7c;
const FUNCREF = 0x70;
const exportEntry = (name: string, kind: number, index: number): Bytes => [...str(name), kind, ...u32(index)];

// ---- running guests ----------------------------------------------------------

type Fn = (...args: unknown[]) => unknown;
const call = (instance: WebAssembly.Instance, name: string, ...args: unknown[]): unknown => {
  const f = instance.exports[name];
  if (typeof f !== 'function') throw new Error(`no exported function ${name}`);
  return (f as Fn)(...args);
};
const memoryOf = (instance: WebAssembly.Instance): WebAssembly.Memory => {
  const m = instance.exports.memory;
  if (!(m instanceof WebAssembly.Memory)) throw new Error('no memory export');
  return m;
};

/** Stub imports for whatever the module asks for: WASI functions answer 0, proc_exit throws; `kiln.memory` is `memory`. */
function importsFor(module: WebAssembly.Module, memory?: WebAssembly.Memory): WebAssembly.Imports {
  const imports: Record<string, Record<string, WebAssembly.ImportValue>> = {};
  for (const entry of WebAssembly.Module.imports(module)) {
    const ns = (imports[entry.module] ??= {});
    if (entry.kind === 'memory') {
      if (!memory) throw new Error(`${entry.module}.${entry.name}: no memory given`);
      ns[entry.name] = memory;
    } else if (entry.kind === 'function') {
      ns[entry.name] =
        entry.name === 'proc_exit'
          ? (code: number) => {
              throw new Error(`proc_exit(${code})`);
            }
          : () => 0;
    } else throw new Error(`unexpected ${entry.kind} import ${entry.module}.${entry.name}`);
  }
  return imports;
}

interface Prepared {
  globals: GlobalSlot[];
  image: MemoryImage;
  restorable: WebAssembly.Module;
  /** The initialised snapshot-time instance. */
  original: WebAssembly.Instance;
}

/** What prepare does: expose, instantiate once, run init once, check tables, capture; rewrite for restores. */
function prepare(bytes: Uint8Array): Prepared {
  const exposed = exposeGlobals(bytes);
  const probe = exposeTables(exposed.bytes);
  const module = new WebAssembly.Module(probe.bytes);
  const original = new WebAssembly.Instance(module, importsFor(module));
  const before = captureTables(original, probe.tables);
  call(original, '_initialize');
  checkTablesUnchanged(before, captureTables(original, probe.tables));
  const image = captureImage(memoryOf(original), exposed.globals, original);
  const restorable = new WebAssembly.Module(toRestorable(exposed.bytes));
  return { globals: exposed.globals, image, restorable, original };
}

/** A cold start: pooled memory, restore, instantiate, set globals. */
function coldStart(p: Prepared, pool: MemoryPool): { instance: WebAssembly.Instance; memory: WebAssembly.Memory; reused: boolean } {
  const lease = pool.acquire(p.image.pages, MAX_PAGES);
  restoreImage(lease.memory, p.image, lease.dirtyBytes);
  const instance = new WebAssembly.Instance(p.restorable, importsFor(p.restorable, lease.memory));
  setGlobals(instance, p.globals, p.image.globals);
  return { instance, memory: lease.memory, reused: lease.reused };
}

/** Everything snapinit can tell about its state. */
function answers(instance: WebAssembly.Instance) {
  return {
    initRuns: call(instance, 'init_runs'),
    tableSum: call(instance, 'table_sum'),
    tableSamples: [0, 1, 2, 1000, 16383].map((i) => call(instance, 'table_at', i)),
    bufferPtr: call(instance, 'buffer_ptr'),
    bufferSum: call(instance, 'buffer_sum'),
    seed: call(instance, 'seed_value'),
    greeting: String.fromCharCode(...Array.from({ length: 28 }, (_, i) => call(instance, 'greeting_at', i) as number)),
  };
}

const snapinit = () => guest('reactor/snapinit.wasm');

describe('snapshot flow on a compiled C reactor (snapinit.c)', () => {
  it('restores an instance that answers like the initialised original, without running init again', () => {
    const p = prepare(snapinit());
    const expected = answers(p.original);
    expect(expected.initRuns).toBe(1);
    expect(expected.greeting).toBe('restored, not re-initialised');
    expect(expected.tableSum).not.toBe(0);
    expect(expected.bufferPtr).not.toBe(0);

    // A fresh, naively initialised instance of the untouched module agrees: the rewrites changed nothing observable.
    const naiveModule = new WebAssembly.Module(snapinit());
    const naive = new WebAssembly.Instance(naiveModule, importsFor(naiveModule));
    call(naive, '_initialize');
    expect(answers(naive)).toEqual(expected);

    // The image holds the 64 KiB table and the heap, not the whole memory.
    const stored = p.image.segments.reduce((n, s) => n + s.bytes.length, 0);
    expect(stored).toBeGreaterThanOrEqual(64 * 1024);
    expect(stored).toBeLessThan(p.image.pages * PAGE);
    expect(p.globals.length).toBeGreaterThanOrEqual(1); // __stack_pointer

    // The restorable module imports its memory and has no start or active data left.
    expect(WebAssembly.Module.imports(p.restorable).filter((i) => i.kind === 'memory')).toEqual([{ module: 'kiln', name: 'memory', kind: 'memory' }]);

    const pool = new MemoryPool();
    for (let round = 0; round < 3; round++) {
      const { instance, memory, reused } = coldStart(p, pool);
      expect(reused).toBe(round > 0);
      expect(answers(instance)).toEqual(expected);
      // Init ran exactly once, at prepare: restores never increment its counter.
      expect(call(instance, 'init_runs')).toBe(1);
      expect(call(p.original, 'init_runs')).toBe(1);
      expect(call(instance, 'bump')).toBe(1);
      pool.release(memory);
    }
    expect(pool.stats()).toMatchObject({ created: 1, reused: 2, discarded: 0 });
  });

  it('state written by one instance is invisible to a fresh restore into the same pooled memory', () => {
    const p = prepare(snapinit());
    const expected = answers(p.original);
    const pool = new MemoryPool();

    const first = coldStart(p, pool);
    const firstAlloc = call(first.instance, 'alloc_fill', 1000, 0xab) as number;
    expect(firstAlloc).not.toBe(0);
    expect(call(first.instance, 'bump')).toBe(1);
    expect(call(first.instance, 'bump')).toBe(2);
    call(first.instance, 'table_set', 5, 0xdeadbeef);
    call(first.instance, 'buffer_set', 0, 99);
    call(first.instance, 'seed_set', 7);
    expect(answers(first.instance)).not.toEqual(expected);
    // Dirty bytes anywhere, also where the image is all zero.
    const raw = new Uint8Array(first.memory.buffer);
    raw.fill(0xff, raw.length - 3 * 4096, raw.length);
    raw.fill(0x5a, p.image.segments[0]!.offset + p.image.segments[0]!.bytes.length, p.image.segments[0]!.offset + p.image.segments[0]!.bytes.length + 10);
    expect(pool.release(first.memory, first.memory.buffer.byteLength)).toBe(true);

    const second = coldStart(p, pool);
    expect(second.reused).toBe(true);
    expect(second.memory).toBe(first.memory);
    expect(answers(second.instance)).toEqual(expected);
    expect(call(second.instance, 'bump')).toBe(1);
    // The allocator state came back too: the same allocation lands at the same address.
    expect(call(second.instance, 'alloc_fill', 1000, 0xcd)).toBe(firstAlloc);

    // Byte for byte, the reused memory after a restore equals a fresh memory after a restore.
    const again = coldStart(p, new MemoryPool()); // fresh memory
    const fresh = new Uint8Array(again.memory.buffer);
    pool.release(second.memory);
    const third = coldStart(p, pool);
    expect(third.memory).toBe(first.memory);
    expect(Buffer.compare(new Uint8Array(third.memory.buffer), fresh)).toBe(0);
  });

  it('a restored instance that grows its memory is discarded on release; the next acquire creates a new memory', () => {
    const p = prepare(snapinit());
    const pool = new MemoryPool();
    const first = coldStart(p, pool);
    expect(call(first.instance, 'grow', 1)).toBe(p.image.pages);
    expect(first.memory.buffer.byteLength).toBe((p.image.pages + 1) * PAGE);
    expect(pool.release(first.memory)).toBe(false);
    expect(pool.stats()).toMatchObject({ created: 1, reused: 0, discarded: 1, idle: 0 });

    const second = coldStart(p, pool);
    expect(second.reused).toBe(false);
    expect(second.memory).not.toBe(first.memory);
    expect(second.memory.buffer.byteLength).toBe(p.image.pages * PAGE);
    expect(answers(second.instance)).toEqual(answers(p.original));
    expect(pool.stats()).toMatchObject({ created: 2, reused: 0, discarded: 1 });
  });
});

// ---- every guest in the repository -------------------------------------------

/** Core modules of a binary: itself, or a component's top-level core module sections (id 1). */
function coreModules(bytes: Uint8Array): Uint8Array[] {
  if (readPreamble(bytes) === 'core') return [bytes];
  return readSections(bytes)
    .filter((s) => s.id === 1)
    .map((s) => bytes.subarray(s.start, s.end));
}

function wasmFiles(dir: string): string[] {
  const full = join(guests, dir);
  return existsSync(full) ? readdirSync(full).filter((f) => f.endsWith('.wasm') && !f.endsWith('.core.wasm')).map((f) => join(dir, f)) : [];
}

describe('toRestorable keepExports', () => {
  it('keeps only the named exports and the global slots, and the instance still works', () => {
    const p = prepare(snapinit());
    const exposed = exposeGlobals(snapinit());
    const trimmed = new WebAssembly.Module(toRestorable(exposed.bytes, { keepExports: ['work', 'table_sum', 'memory'] }));
    expect(WebAssembly.Module.exports(trimmed).map((e) => e.name).sort()).toEqual(
      ['memory', 'table_sum', 'work', ...exposed.globals.map((g) => g.exportName)].sort(),
    );
    const { instance } = coldStart({ ...p, restorable: trimmed }, new MemoryPool());
    expect(call(instance, 'table_sum')).toBe(call(p.original, 'table_sum'));
    expect(call(instance, 'work', 77)).toBe(call(p.original, 'work', 77));
    expect(() => toRestorable(exposed.bytes, { keepExports: ['handle'] })).toThrow(/keepExports names "handle", which the module does not export/);
  });
});

describe('rewrites keep every guest valid', () => {
  const files = [...wasmFiles('command'), ...wasmFiles('reactor'), ...wasmFiles('component')];

  it('finds the guests', () => {
    expect(files.length).toBeGreaterThanOrEqual(3);
    expect(files).toContain(join('reactor', 'snapinit.wasm'));
    expect(files.some((f) => f.startsWith('component'))).toBe(true);
  });

  it.each(files)('%s: exposeGlobals + toRestorable validate', (file) => {
    const modules = coreModules(guest(file));
    expect(modules.length).toBeGreaterThan(0);
    for (const [i, original] of modules.entries()) {
      const where = `${file} core module ${i}`;
      const before = readModuleInfo(original);
      const exposed = exposeGlobals(original);
      expect(WebAssembly.validate(exposed.bytes), `${where}: exposeGlobals output`).toBe(true);
      const restorable = toRestorable(exposed.bytes);
      expect(WebAssembly.validate(restorable), `${where}: toRestorable output`).toBe(true);
      expect(WebAssembly.validate(exposeTables(exposed.bytes).bytes), `${where}: exposeTables output`).toBe(true);

      const module = new WebAssembly.Module(exposed.bytes);
      const exported = WebAssembly.Module.exports(module).filter((e) => e.kind === 'global').map((e) => e.name);
      for (const g of exposed.globals) expect(exported).toContain(g.exportName);

      const after = readModuleInfo(restorable);
      const definedBefore = readSections(original).some((s) => s.id === 5);
      expect(readSections(restorable).some((s) => s.id === 5 || s.id === 8), `${where}: memory or start section left`).toBe(false);
      if (definedBefore) {
        expect(after.imports.filter((m) => m.kind === 'memory').map((m) => `${m.module}.${m.name}`)).toEqual(['kiln.memory']);
        expect(after.memories).toEqual(before.memories);
      }
      // Function indices do not move: the same exports name the same functions.
      expect(after.exports.filter((e) => e.kind === 'func')).toEqual(before.exports.filter((e) => e.kind === 'func'));
      expect(after.imports.filter((m) => m.kind === 'func')).toEqual(before.imports.filter((m) => m.kind === 'func'));
    }
  });
});

// ---- hand-assembled modules ---------------------------------------------------

/** A module with a 2-entry funcref table filled by an active segment with [f2, f1], and `_initialize` = `init`. */
function tableModule(init: Bytes): Uint8Array<ArrayBuffer> {
  return Uint8Array.from([
    ...HEADER,
    ...section(1, vec([[0x60, 0x00, 0x00]])),
    ...section(3, vec([[0x00], [0x00], [0x00]])),
    ...section(4, vec([[FUNCREF, 0x00, 0x02]])),
    ...section(5, vec([[0x00, 0x01]])),
    ...section(7, vec([exportEntry('_initialize', 0, 0), exportEntry('memory', 2, 0)])),
    ...section(9, vec([[0x00, 0x41, 0x00, 0x0b, ...vec([[2], [1]])]])),
    ...section(10, vec([body(init), body([]), body([])])),
  ]);
}

const TABLE_SET = (slot: number, func: number): Bytes => [0x41, slot, 0xd2, func, 0x26, 0x00];

describe('tables', () => {
  const snapshotTables = (bytes: Uint8Array) => {
    const probe = exposeTables(exposeGlobals(bytes).bytes);
    expect(probe.tables).toEqual([{ index: 0, exportName: 'kiln:table:0' }]);
    const module = new WebAssembly.Module(probe.bytes);
    const instance = new WebAssembly.Instance(module, {});
    const before = captureTables(instance, probe.tables);
    call(instance, '_initialize');
    return () => checkTablesUnchanged(before, captureTables(instance, probe.tables));
  };

  it('names table entries by function index, so a change is visible', () => {
    const probe = exposeTables(tableModule([]));
    const instance = new WebAssembly.Instance(new WebAssembly.Module(probe.bytes), {});
    expect(captureTables(instance, probe.tables)[0]!.entries).toEqual(['func 2', 'func 1']);
  });

  it('refuses a module whose init sets a table entry', () => {
    const check = snapshotTables(tableModule(TABLE_SET(0, 1)));
    expect(check).toThrow(SnapshotError);
    expect(check).toThrow(/init changed entry 0 of table 0 from function 2 to function 1/);
  });

  it('refuses a module whose init grows a table', () => {
    // ref.null func; i32.const 1; table.grow 0; drop
    const check = snapshotTables(tableModule([0xd0, FUNCREF, 0x41, 0x01, 0xfc, 0x0f, 0x00, 0x1a]));
    expect(check).toThrow(/init changed the length of table 0 from 2 to 3/);
  });

  it('accepts init that writes a table entry back unchanged', () => {
    expect(snapshotTables(tableModule(TABLE_SET(0, 2)))).not.toThrow();
  });

  it('restored modules keep their element segments: the table is rebuilt at instantiation', () => {
    const restorable = toRestorable(exposeGlobals(tableModule([])).bytes);
    const probe = exposeTables(restorable);
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 1 });
    const instance = new WebAssembly.Instance(new WebAssembly.Module(probe.bytes), { kiln: { memory } });
    expect(captureTables(instance, probe.tables)[0]!.entries).toEqual(['func 2', 'func 1']);
    expect(instance.exports.memory).toBe(memory);
  });
});

/**
 * Mutable globals of each numeric type, zero-initialised, that `_initialize`
 * sets; getters read them. Also an immutable global (not exposed), an active
 * data segment, a passive one and a start function that bumps a counter in
 * memory.
 */
function globalsModule(): Uint8Array<ArrayBuffer> {
  const types = [
    [0x60, 0x00, 0x00], // 0: () -> ()
    [0x60, 0x00, 0x01, I32], // 1: () -> i32
    [0x60, 0x00, 0x01, I64], // 2: () -> i64
    [0x60, 0x00, 0x01, F32], // 3: () -> f32
    [0x60, 0x00, 0x01, F64], // 4: () -> f64
  ];
  const f32 = (x: number) => [...new Uint8Array(Float32Array.of(x).buffer)];
  const f64 = (x: number) => [...new Uint8Array(Float64Array.of(x).buffer)];
  const globals = [
    [I32, 0x01, 0x41, 0x00, 0x0b], // 0 mut i32 = 0
    [I32, 0x00, 0x41, 0x2a, 0x0b], // 1 const i32 = 42
    [I64, 0x01, 0x42, 0x00, 0x0b], // 2 mut i64 = 0
    [F32, 0x01, 0x43, ...f32(0), 0x0b], // 3 mut f32 = 0
    [F64, 0x01, 0x44, ...f64(0), 0x0b], // 4 mut f64 = 0
  ];
  const init = [
    ...[0x41, 0xb9, 0xe0, 0x00], // i32.const 12345
    ...[0x24, 0x00],
    ...[0x42, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x7f], // i64.const -2^63
    ...[0x24, 0x02],
    ...[0x43, ...f32(1.5)],
    ...[0x24, 0x03],
    ...[0x44, ...f64(-0.1)],
    ...[0x24, 0x04],
  ];
  // start: mem[100] += 1 (i32)
  const start = [0x41, 0xe4, 0x00, 0x41, 0xe4, 0x00, 0x28, 0x02, 0x00, 0x41, 0x01, 0x6a, 0x36, 0x02, 0x00];
  return Uint8Array.from([
    ...HEADER,
    ...section(1, vec(types)),
    ...section(3, vec([[0], [1], [2], [3], [4], [1], [0]])),
    ...section(5, vec([[0x00, 0x01]])),
    ...section(6, vec(globals)),
    ...section(
      7,
      vec([
        exportEntry('_initialize', 0, 0),
        exportEntry('get_i32', 0, 1),
        exportEntry('get_i64', 0, 2),
        exportEntry('get_f32', 0, 3),
        exportEntry('get_f64', 0, 4),
        exportEntry('starts', 0, 5),
        exportEntry('memory', 2, 0),
        exportEntry('also_i32', 3, 0), // already exported under another name
      ]),
    ),
    ...section(8, u32(6)),
    ...section(12, u32(2)),
    ...section(
      10,
      vec([
        body(init),
        body([0x23, 0x00]),
        body([0x23, 0x02]),
        body([0x23, 0x03]),
        body([0x23, 0x04]),
        body([0x41, 0xe4, 0x00, 0x28, 0x02, 0x00]), // starts: mem[100]
        body(start),
      ]),
    ),
    ...section(
      11,
      vec([
        [0x00, 0x41, 0xc8, 0x01, 0x0b, ...str('active data')], // at 200
        [0x01, ...str('passive')],
      ]),
    ),
  ]);
}

describe('globals, data segments and the start function', () => {
  it('captures and restores mutable globals of every numeric type', () => {
    const exposed = exposeGlobals(globalsModule());
    expect(exposed.globals).toEqual([
      { index: 0, type: 'i32', exportName: 'kiln:global:0' },
      { index: 2, type: 'i64', exportName: 'kiln:global:2' },
      { index: 3, type: 'f32', exportName: 'kiln:global:3' },
      { index: 4, type: 'f64', exportName: 'kiln:global:4' },
    ]);
    const p = prepare(globalsModule());
    expect(p.image.globals).toEqual([12345, -(2n ** 63n), 1.5, -0.1]);
    const decoded = decodeImage(encodeImage(p.image));
    const { instance } = coldStart({ ...p, image: decoded }, new MemoryPool());
    expect(call(instance, 'get_i32')).toBe(12345);
    expect(call(instance, 'get_i64')).toBe(-(2n ** 63n));
    expect(call(instance, 'get_f32')).toBe(1.5);
    expect(call(instance, 'get_f64')).toBe(-0.1);
    // The start function ran once, at snapshot time: its effect is restored, it does not run again.
    expect(call(p.original, 'starts')).toBe(1);
    expect(call(instance, 'starts')).toBe(1);
    expect(Buffer.from(new Uint8Array(memoryOf(instance).buffer, 200, 11)).toString()).toBe('active data');
    // Without setGlobals the globals would hold their initialisers.
    const bare = new WebAssembly.Instance(p.restorable, { kiln: { memory: new WebAssembly.Memory({ initial: 1 }) } });
    expect(call(bare, 'get_i32')).toBe(0);
  });

  it('turns active data segments passive and empty, keeps passive ones, drops the start section', () => {
    const restorable = toRestorable(exposeGlobals(globalsModule()).bytes);
    expect(WebAssembly.validate(restorable)).toBe(true);
    const text = Buffer.from(restorable).toString('latin1');
    expect(text).not.toContain('active data');
    expect(text).toContain('passive');
    expect(readSections(restorable).map((s) => s.id)).toEqual([1, 2, 3, 6, 7, 12, 10, 11]);
    const kept = toRestorable(exposeGlobals(globalsModule()).bytes, { keepSegmentBytes: true });
    expect(WebAssembly.validate(kept)).toBe(true);
    expect(Buffer.from(kept).toString('latin1')).toContain('active data');
  });

  it('is idempotent: exposing twice adds nothing', () => {
    const once = exposeGlobals(globalsModule());
    const twice = exposeGlobals(once.bytes);
    expect(Buffer.compare(twice.bytes, once.bytes)).toBe(0);
    expect(twice.globals).toEqual(once.globals);
  });

  it('refuses what it cannot snapshot, saying what it found and what Kiln expects', () => {
    const importsGlobal = Uint8Array.from([
      ...HEADER,
      ...section(2, vec([[...str('env'), ...str('g'), 0x03, I32, 0x01]])),
    ]);
    expect(() => exposeGlobals(importsGlobal)).toThrow(/imports a global \(env\.g\); Kiln snapshots only modules that define all their globals/);

    const v128 = Uint8Array.from([...HEADER, ...section(6, vec([[0x7b, 0x01, 0xfd, 0x0c, ...new Array(16).fill(0), 0x0b]]))]);
    expect(() => exposeGlobals(v128)).toThrow(/global 0 is a mutable v128 global; Kiln snapshots mutable globals of type i32, i64, f32 and f64 only/);
    const funcref = Uint8Array.from([...HEADER, ...section(6, vec([[FUNCREF, 0x01, 0xd0, FUNCREF, 0x0b]]))]);
    expect(() => exposeGlobals(funcref)).toThrow(/mutable funcref global/);

    const twoMemories = Uint8Array.from([...HEADER, ...section(5, vec([[0x00, 0x01], [0x00, 0x01]]))]);
    expect(() => toRestorable(twoMemories)).toThrow(/2 memories \(0 imported, 2 defined\); Kiln snapshots modules with one memory/);
    const shared = Uint8Array.from([...HEADER, ...section(5, vec([[0x03, 0x01, 0x02]]))]);
    expect(() => toRestorable(shared)).toThrow(/shared memory/);

    const clash = Uint8Array.from([
      ...HEADER,
      ...section(6, vec([[I32, 0x01, 0x41, 0x00, 0x0b], [I32, 0x01, 0x41, 0x00, 0x0b]])),
      ...section(7, vec([exportEntry('kiln:global:0', 3, 1)])),
    ]);
    expect(() => exposeGlobals(clash)).toThrow(/already exports "kiln:global:0" as global 1/);

    const component = Uint8Array.from([0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00]);
    expect(() => exposeGlobals(component)).toThrow(SnapshotError);
  });
});

// ---- images ---------------------------------------------------------------------

describe('memory images', () => {
  it('finds non-zero ranges byte-exactly and coalesces gaps shorter than 64 bytes', () => {
    const buffer = new ArrayBuffer(4 * PAGE);
    const b = new Uint8Array(buffer);
    b[5] = 1;
    b[5 + 63] = 2; // gap of 62 zeros: same range
    b[5 + 63 + 65] = 3; // gap of 64: new range
    b[4095] = 4; // last byte of a chunk
    b[4096] = 5; // first byte of the next: same range
    b[3 * PAGE + 1000] = 6;
    b[4 * PAGE - 1] = 7;
    expect(nonZeroRanges(buffer)).toEqual([
      [5, 69],
      [133, 134],
      [4095, 4097],
      [3 * PAGE + 1000, 3 * PAGE + 1001],
      [4 * PAGE - 1, 4 * PAGE],
    ]);
    expect(nonZeroRanges(new ArrayBuffer(PAGE))).toEqual([]);
  });

  it('scans a 16 MiB mostly-zero memory quickly', () => {
    const memory = new WebAssembly.Memory({ initial: 256 });
    const b = new Uint8Array(memory.buffer);
    for (let i = 0; i < 64; i++) b[i * 262144 + 17] = i + 1;
    nonZeroRanges(memory.buffer); // warm up
    const started = performance.now();
    const ranges = nonZeroRanges(memory.buffer);
    const ms = performance.now() - started;
    expect(ranges).toHaveLength(64);
    expect(ms).toBeLessThan(100); // ≈ 1–3 ms here; generous for a loaded CI machine
  });

  it('restore zeroes only what may be dirty, and exactly that', () => {
    const image: MemoryImage = { pages: 2, segments: [{ offset: 10, bytes: Uint8Array.of(1, 2, 3) }, { offset: PAGE + 5, bytes: Uint8Array.of(9) }], globals: [] };
    const memory = new WebAssembly.Memory({ initial: 2, maximum: 4 });
    const b = new Uint8Array(memory.buffer);
    b.fill(0xee);
    restoreImage(memory, image, 100); // the previous user claimed only 100 bytes
    expect(Array.from(b.subarray(0, 16))).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 0, 0, 0]);
    expect(b.subarray(13, 100).every((x) => x === 0)).toBe(true);
    expect(b[100]).toBe(0xee); // beyond dirtyBytes: untouched
    expect(b[PAGE + 5]).toBe(9);
    b.fill(0xee);
    restoreImage(memory, image, memory.buffer.byteLength);
    const expected = new Uint8Array(2 * PAGE);
    expected.set([1, 2, 3], 10);
    expected[PAGE + 5] = 9;
    expect(Buffer.compare(b, expected)).toBe(0);
    // A smaller memory grows to the image's size.
    const small = new WebAssembly.Memory({ initial: 1, maximum: 4 });
    restoreImage(small, image, 0);
    expect(small.buffer.byteLength).toBe(2 * PAGE);
    expect(new Uint8Array(small.buffer)[PAGE + 5]).toBe(9);
    expect(() => restoreImage(new WebAssembly.Memory({ initial: 1, maximum: 1 }), image, 0)).toThrow(/needs 2 pages but the memory has 1/);
  });

  it('encode/decode round-trips an image', () => {
    const p = prepare(snapinit());
    const encoded = encodeImage(p.image);
    const decoded = decodeImage(encoded);
    expect(decoded.pages).toBe(p.image.pages);
    expect(decoded.globals).toEqual(p.image.globals);
    expect(decoded.segments.map((s) => [s.offset, Buffer.from(s.bytes).toString('hex')])).toEqual(
      p.image.segments.map((s) => [s.offset, Buffer.from(s.bytes).toString('hex')]),
    );
    // Survives a structured clone (what postMessage to a worker does) and restores the same memory.
    const cloned = decodeImage(structuredClone(encoded));
    const a = new WebAssembly.Memory({ initial: p.image.pages });
    const b = new WebAssembly.Memory({ initial: p.image.pages });
    restoreImage(a, p.image, 0);
    restoreImage(b, cloned, 0);
    expect(Buffer.compare(new Uint8Array(a.buffer), new Uint8Array(b.buffer))).toBe(0);

    const synthetic: MemoryImage = {
      pages: 3,
      segments: [{ offset: 0, bytes: Uint8Array.of(1) }, { offset: 3 * PAGE - 2, bytes: Uint8Array.of(2, 3) }],
      globals: [0, -1, 2n ** 63n - 1n, -(2n ** 63n), 3.25, -0, Infinity],
    };
    const back = decodeImage(encodeImage(synthetic));
    expect(back).toEqual(synthetic);
    expect(Object.is(back.globals[5], -0)).toBe(true);
  });

  it('decode refuses corrupt images', () => {
    const good = encodeImage({ pages: 1, segments: [{ offset: 4, bytes: Uint8Array.of(1, 2) }], globals: [1] });
    expect(() => decodeImage(good.subarray(0, good.length - 1))).toThrow(/corrupt: segment 0's bytes run past the end/);
    expect(() => decodeImage(Uint8Array.of(...good, 0))).toThrow(/1 trailing bytes/);
    const badMagic = good.slice();
    badMagic[0] = 0;
    expect(() => decodeImage(badMagic)).toThrow(/magic/);
    const outside = encodeImage({ pages: 1, segments: [{ offset: PAGE - 1, bytes: Uint8Array.of(1, 2) }], globals: [] });
    expect(() => decodeImage(outside)).toThrow(/past the memory's 65536 bytes/);
    expect(() => decodeImage(new Uint8Array(3))).toThrow(SnapshotError);
  });
});

// ---- the pool --------------------------------------------------------------------

describe('MemoryPool', () => {
  it('prewarms touched memories, reuses them per size class and respects its caps', () => {
    const pool = new MemoryPool({ maxIdlePerClass: 2 });
    expect(pool.prewarm({ initial: 2, maximum: 8 }, 5)).toBe(2);
    expect(pool.idleIn({ initial: 2, maximum: 8 })).toBe(2);
    const a = pool.acquire(2, 8);
    expect(a).toMatchObject({ reused: true, dirtyBytes: 0 });
    expect(a.memory.buffer.byteLength).toBe(2 * PAGE);
    // Another class is not served from this one.
    const other = pool.acquire(2, 16);
    expect(other.reused).toBe(false);
    expect(pool.release(a.memory, 1234)).toBe(true);
    expect(() => pool.release(a.memory)).toThrow(/already idle/);
    expect(pool.acquire(2, 8)).toMatchObject({ memory: a.memory, reused: true, dirtyBytes: 1234 });
    // Over the per-class cap, and foreign memories: discarded.
    const b = pool.acquire(2, 8);
    const c = pool.acquire(2, 8);
    expect(pool.release(b.memory)).toBe(true);
    expect(pool.release(c.memory)).toBe(true);
    expect(pool.release(a.memory)).toBe(false);
    expect(pool.release(new WebAssembly.Memory({ initial: 2, maximum: 8 }))).toBe(false);
    expect(pool.stats()).toMatchObject({ created: 4, reused: 3, discarded: 2, idle: 2, idleBytes: 4 * PAGE });
    pool.clear();
    expect(pool.stats()).toMatchObject({ idle: 0, idleBytes: 0 });
  });

  it('caps idle bytes over all classes', () => {
    const pool = new MemoryPool({ maxIdleBytes: 3 * PAGE });
    expect(pool.prewarm({ initial: 2, maximum: 2 }, 4)).toBe(1);
    const m = pool.acquire(1, 1);
    expect(pool.release(m.memory)).toBe(true);
    const n = pool.acquire(1, 4);
    expect(pool.release(n.memory)).toBe(false);
  });
});
