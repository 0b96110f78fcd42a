// A component's snapshot, Wizer-style: at prepare time the guest is
// instantiated once and initialised once (`_initialize`: C constructors,
// language start-up), then its memory and mutable globals are captured.
// Every cold start afterwards takes a pooled, pre-touched memory, restores
// the image into it and sets the globals: init never runs again.
import { captureImage, captureTables, checkTablesUnchanged, restoreImage, setGlobals, type MemoryImage } from './image.js';
import type { MemoryPool } from './memory-pool.js';
import { exposeGlobals, exposeTables, MEMORY_IMPORT, toRestorable, type GlobalSlot } from './rewrite.js';

export interface Snapshot {
  /** The module cold starts instantiate: memory imported, data segments and start section gone. */
  module: WebAssembly.Module;
  /** Its bytes, for storing the prepared function. */
  moduleBytes: Uint8Array;
  /** Its imports, read once: every cold start needs them. */
  imports: WebAssembly.ModuleImportDescriptor[];
  image: MemoryImage;
  globals: GlobalSlot[];
  /** The memory's maximum (the function's memory limit), for pool size classes. */
  maxPages: number;
}

export interface InitHooks {
  /** Imports for the snapshot-time instance, other than its memory. */
  imports: WebAssembly.Imports;
  /** Called with the snapshot-time instance before init runs (bind the WASI host, arm fuel). */
  beforeInit(instance: WebAssembly.Instance): void;
}

/**
 * Runs init once and captures its result. Throws SnapshotError for what
 * cannot be restored correctly, and whatever the guest throws if init faults.
 */
export function takeSnapshot(core: Uint8Array, maxPages: number, keepExports: readonly string[], hooks: InitHooks): Snapshot {
  const exposed = exposeGlobals(core);
  const probe = exposeTables(exposed.bytes);
  const instance = new WebAssembly.Instance(new WebAssembly.Module(probe.bytes), hooks.imports);
  hooks.beforeInit(instance);
  const tablesBefore = captureTables(instance, probe.tables);
  (instance.exports._initialize as (() => void) | undefined)?.();
  checkTablesUnchanged(tablesBefore, captureTables(instance, probe.tables));
  const image = captureImage(instance.exports.memory as WebAssembly.Memory, exposed.globals, instance);
  const restorable = toRestorable(exposed.bytes, { keepExports });
  const module = new WebAssembly.Module(restorable);
  return { module, moduleBytes: restorable, imports: WebAssembly.Module.imports(module), image, globals: exposed.globals, maxPages };
}

export interface Restored {
  instance: WebAssembly.Instance;
  memory: WebAssembly.Memory;
}

/** A cold start: pooled memory + image copy + globals. */
export function restoreSnapshot(snapshot: Snapshot, pool: MemoryPool, imports: WebAssembly.Imports): Restored {
  const lease = pool.acquire(snapshot.image.pages, snapshot.maxPages);
  restoreImage(lease.memory, snapshot.image, lease.dirtyBytes);
  const instance = new WebAssembly.Instance(snapshot.module, {
    ...imports,
    [MEMORY_IMPORT.module]: { [MEMORY_IMPORT.name]: lease.memory },
  });
  setGlobals(instance, snapshot.globals, snapshot.image.globals);
  return { instance, memory: lease.memory };
}
