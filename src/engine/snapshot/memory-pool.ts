// Pooled, pre-touched linear memories for restorable modules (which import
// their memory). On this kind of machine the first touch of a fresh page
// costs ≈ 10 µs per 4 KiB, which dominates a fresh instance; a memory whose
// pages were touched once, by creation here or by an earlier instance, takes
// a snapshot restore at memcpy speed.
//
// Memories are grouped by size class: (initial pages, maximum pages), both
// exact. The initial size is what the guest sees as memory.size after a
// restore, and the maximum must not exceed what the module's import
// declares, so neither can be rounded without changing the guest's view. A
// memory comes back only at its class's initial size: a guest that grew it
// cannot shrink it, so it is discarded.
//
// Synchronous and timer-free. Today it fills as instances give their memory
// back; prewarm() is there for a scheduler that provisions ahead of demand.

import { WASM_PAGE_BYTES } from '../wasm/memory-cap.js';

/** Bytes between two touches when a memory is created: one write per OS page. */
const OS_PAGE_BYTES = 4096;

export interface SizeClass {
  /** Pages the memory has when handed out (the snapshot's page count). */
  initial: number;
  /** Its maximum (the function's memory cap). */
  maximum: number;
}

export interface MemoryLease {
  memory: WebAssembly.Memory;
  /** Whether an earlier instance used it (restoreImage must then zero `dirtyBytes`). */
  reused: boolean;
  /** Bytes at its start an earlier instance may have written: 0 for a new memory. Pass to restoreImage. */
  dirtyBytes: number;
}

export interface MemoryPoolOptions {
  /** Idle memories kept per size class. Default 16. */
  maxIdlePerClass?: number;
  /** Idle bytes kept over all classes. Default 512 MiB. */
  maxIdleBytes?: number;
}

export interface MemoryPoolStats {
  /** Memories created (by acquire on a miss, or by prewarm). */
  created: number;
  /** Acquires served by an idle memory. */
  reused: number;
  /** Releases refused: grown, from another pool or none, or over a cap. */
  discarded: number;
  /** Idle memories held now, and their bytes. */
  idle: number;
  idleBytes: number;
}

interface Idle {
  memories: WebAssembly.Memory[];
  dirty: number[];
}

/** Per memory the pool created: its class, so release can check it without type reflection. */
interface Origin {
  key: number;
  initial: number;
}

/** One number per (initial, maximum): maximum is at most 65536. */
const classKey = (initial: number, maximum: number): number => initial * 65537 + maximum;

export class MemoryPool {
  private readonly idle = new Map<number, Idle>();
  private readonly origins = new WeakMap<WebAssembly.Memory, Origin>();
  private readonly maxIdlePerClass: number;
  private readonly maxIdleBytes: number;
  private idleCount = 0;
  private idleByteCount = 0;
  private createdCount = 0;
  private reusedCount = 0;
  private discardedCount = 0;

  constructor(options: MemoryPoolOptions = {}) {
    this.maxIdlePerClass = options.maxIdlePerClass ?? 16;
    this.maxIdleBytes = options.maxIdleBytes ?? 512 * 2 ** 20;
  }

  /**
   * A memory of exactly `minPages` pages with maximum `maxPages`: an idle one
   * of that class if there is one (most recently released first: its pages
   * are the likeliest to be in cache), else a new one, pre-touched.
   */
  acquire(minPages: number, maxPages: number): MemoryLease {
    const key = classKey(minPages, maxPages);
    const idle = this.idle.get(key);
    if (idle !== undefined && idle.memories.length > 0) {
      const memory = idle.memories.pop()!;
      const dirtyBytes = idle.dirty.pop()!;
      this.idleCount--;
      this.idleByteCount -= minPages * WASM_PAGE_BYTES;
      this.reusedCount++;
      return { memory, reused: true, dirtyBytes };
    }
    return { memory: this.create(minPages, maxPages, key), reused: false, dirtyBytes: 0 };
  }

  /**
   * Takes a memory back after its instance is done. `dirtyBytes`: how many
   * bytes from its start the instance may have written (default: all).
   * Returns whether it was kept; a memory that grew past its class's initial
   * size, one this pool did not create, or one over a cap is discarded.
   */
  release(memory: WebAssembly.Memory, dirtyBytes?: number): boolean {
    const origin = this.origins.get(memory);
    const length = memory.buffer.byteLength;
    const bytes = origin === undefined ? 0 : origin.initial * WASM_PAGE_BYTES;
    if (origin === undefined || length !== bytes || this.idleByteCount + bytes > this.maxIdleBytes) {
      this.discardedCount++;
      return false;
    }
    let idle = this.idle.get(origin.key);
    if (idle === undefined) {
      idle = { memories: [], dirty: [] };
      this.idle.set(origin.key, idle);
    }
    // The same memory released twice would be handed to two instances.
    if (idle.memories.includes(memory)) throw new Error('MemoryPool.release: this memory is already idle in the pool');
    if (idle.memories.length >= this.maxIdlePerClass) {
      this.discardedCount++;
      return false;
    }
    idle.memories.push(memory);
    idle.dirty.push(Math.min(dirtyBytes ?? length, length));
    this.idleCount++;
    this.idleByteCount += bytes;
    return true;
  }

  /** Creates idle memories of `sizeClass` until it holds `count` (within the caps). Returns how many were added. */
  prewarm(sizeClass: SizeClass, count: number): number {
    const key = classKey(sizeClass.initial, sizeClass.maximum);
    const bytes = sizeClass.initial * WASM_PAGE_BYTES;
    let idle = this.idle.get(key);
    if (idle === undefined) {
      idle = { memories: [], dirty: [] };
      this.idle.set(key, idle);
    }
    const target = Math.min(count, this.maxIdlePerClass);
    let added = 0;
    while (idle.memories.length < target && this.idleByteCount + bytes <= this.maxIdleBytes) {
      idle.memories.push(this.create(sizeClass.initial, sizeClass.maximum, key));
      idle.dirty.push(0);
      this.idleCount++;
      this.idleByteCount += bytes;
      added++;
    }
    return added;
  }

  /** Idle memories of one class. */
  idleIn(sizeClass: SizeClass): number {
    return this.idle.get(classKey(sizeClass.initial, sizeClass.maximum))?.memories.length ?? 0;
  }

  /** Drops every idle memory (of one class, or all). */
  clear(sizeClass?: SizeClass): void {
    for (const [key, idle] of this.idle) {
      if (sizeClass && key !== classKey(sizeClass.initial, sizeClass.maximum)) continue;
      for (const memory of idle.memories) this.idleByteCount -= memory.buffer.byteLength;
      this.idleCount -= idle.memories.length;
      this.idle.delete(key);
    }
  }

  /** Bytes the idle memories hold now (what stats() reports, without building the object). */
  get idleBytes(): number {
    return this.idleByteCount;
  }

  stats(): MemoryPoolStats {
    return {
      created: this.createdCount,
      reused: this.reusedCount,
      discarded: this.discardedCount,
      idle: this.idleCount,
      idleBytes: this.idleByteCount,
    };
  }

  private create(initial: number, maximum: number, key: number): WebAssembly.Memory {
    if (!Number.isInteger(initial) || !Number.isInteger(maximum) || initial < 0 || maximum < initial || maximum > 65536) {
      throw new RangeError(`invalid memory size class: initial ${initial}, maximum ${maximum} pages`);
    }
    const memory = new WebAssembly.Memory({ initial, maximum });
    // Fault every page in now, off the instance's path: one write per OS page.
    const bytes = new Uint8Array(memory.buffer);
    for (let i = 0; i < bytes.length; i += OS_PAGE_BYTES) bytes[i] = 0;
    this.origins.set(memory, { key, initial });
    this.createdCount++;
    return memory;
  }
}
