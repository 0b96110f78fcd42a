// One executor's functions and their ready instances: the per-function pools
// of the scheduler, as seen from inside an executor thread.
//
// - Every function this executor ran keeps at least one instance ready after
//   use (restored ahead of time in `fresh` mode, kept as it is in `reuse`
//   mode), and its provisioned share at all times.
// - An instance beyond the provisioned share that idles past the function's
//   TTL is dropped: the function scales to zero.
// - Ready instances and pooled memories together stay within this executor's
//   share of the memory budget; past it, the least recently used function's
//   instances go first (provisioned ones never), after the pooled memories.
//
// Runs on one thread and never blocks: reaping is a timer, refilling runs
// after the invocation's answer has left.
import { PreparedFunction, type GuestInstance } from '../engine/index.js';
import { MemoryPool } from '../engine/snapshot/memory-pool.js';
import { MAX_CACHED_FUNCTIONS_PER_EXECUTOR, MAX_POOLED_MEMORY_BYTES } from '../limits.js';
import type { FunctionLoad, Held, HeldNotice } from './messages.js';

interface Entry {
  readonly key: string;
  readonly prepared: PreparedFunction;
  readonly idleTtlMs: number;
  /** This executor's share of the function's provisioned instances. */
  provisioned: number;
  /** Ready instances; the last is the most recently used. */
  readonly ready: GuestInstance[];
  /** Linear memory bytes the ready instances hold (unchanged while they idle). */
  readyBytes: number;
  /** An instance's host side (WASI hosts, output buffers) without a Wasm instance, kept to skip rebuilding it. */
  spare: GuestInstance | undefined;
  lastUsed: number;
  /** What the network thread was last told this executor holds. */
  told: Held;
}

/** What one function holds on this executor now, and how many of its instances were just reaped or evicted. */
export type HeldChange = Omit<HeldNotice, 'op'>;

export class InstanceCache {
  /** Map order is the least-recently-used order: a used entry is moved to the end. */
  private readonly entries = new Map<string, Entry>();
  private readonly memories: MemoryPool;
  private heldBytes = 0;
  private reapTimer: NodeJS.Timeout | undefined;
  private reapAt = Infinity;

  constructor(
    private readonly memoryBudgetBytes: number,
    /** Reports every change to what a function holds here; the network thread keeps the live view. */
    private readonly notify: (change: HeldChange) => void,
  ) {
    this.memories = new MemoryPool({ maxIdleBytes: Math.min(MAX_POOLED_MEMORY_BYTES, memoryBudgetBytes) });
  }

  /** The function under `key`, decoded from `load` if this executor does not hold it; undefined if neither. */
  lookup(key: string, load: FunctionLoad | undefined): Entry | undefined {
    let entry = this.entries.get(key);
    if (entry) {
      this.entries.delete(key);
    } else if (load) {
      entry = {
        key,
        prepared: PreparedFunction.decode(load.prepared, load.config),
        idleTtlMs: load.idleTtlMs,
        provisioned: 0,
        ready: [],
        readyBytes: 0,
        spare: undefined,
        lastUsed: performance.now(),
        told: { ready: 0, bytes: 0 },
      };
      this.dropColdest();
    } else {
      return undefined;
    }
    this.entries.set(key, entry);
    return entry;
  }

  /** An instance to run the next invocation on: a ready one if there is one (a warm start). */
  take(entry: Entry): GuestInstance {
    entry.lastUsed = performance.now();
    const instance = entry.ready.pop();
    if (instance) {
      this.release(entry, instance.memoryBytes);
      return instance;
    }
    return this.unready(entry);
  }

  /**
   * Takes an instance back after its invocation. It stays ready only in
   * reuse mode and only if it did not fault; otherwise its Wasm instance goes
   * (commands run once per instance) and refill() makes a new one later.
   */
  giveBack(entry: Entry, instance: GuestInstance): void {
    const { config } = entry.prepared;
    if (instance.healthy && config.instanceMode === 'reuse' && entry.prepared.kind === 'component') {
      this.hold(entry, instance);
    } else {
      instance.reset();
      entry.spare = instance;
    }
  }

  /**
   * Restores instances until the function has its target ready, keeps the
   * budget, and tells the network thread if what it holds changed. Runs after
   * the invocation's answer has left, so a restore here is off the request path.
   */
  refill(entry: Entry): void {
    const target = this.target(entry);
    while (entry.ready.length < target) {
      const instance = this.unready(entry);
      instance.warm();
      this.hold(entry, instance);
    }
    if (entry.ready.length !== entry.told.ready || entry.readyBytes !== entry.told.bytes) this.tell(entry, 0, 0);
    this.keepBudget();
    this.scheduleReap(entry.lastUsed + entry.idleTtlMs);
  }

  /** Sets this executor's provisioned share for the function and restores up to it now. */
  provision(entry: Entry, count: number): void {
    entry.provisioned = count;
    this.refill(entry);
  }

  /** Drops a function (a redeploy replaced it, or it was deleted). */
  forget(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    this.drop(entry, entry.ready.length);
    this.entries.delete(key);
  }

  /** An instance with no Wasm instance yet: the kept host side, or a new one. */
  private unready(entry: Entry): GuestInstance {
    const spare = entry.spare;
    entry.spare = undefined;
    return spare ?? entry.prepared.instantiate(this.memories);
  }

  // In use, the function keeps one instance ready for its next invocation
  // until it idles out; its provisioned share, always.
  private target(entry: Entry): number {
    return Math.max(entry.provisioned, 1);
  }

  private hold(entry: Entry, instance: GuestInstance): void {
    const bytes = instance.memoryBytes;
    entry.ready.push(instance);
    entry.readyBytes += bytes;
    this.heldBytes += bytes;
  }

  private release(entry: Entry, bytes: number): void {
    entry.readyBytes -= bytes;
    this.heldBytes -= bytes;
  }

  /** Resets the `count` least recently used ready instances of `entry`. */
  private drop(entry: Entry, count: number): void {
    for (const instance of entry.ready.splice(0, count)) {
      this.release(entry, instance.memoryBytes);
      instance.reset();
      entry.spare ??= instance;
    }
  }

  private keepBudget(): void {
    if (this.heldBytes + this.memories.idleBytes <= this.memoryBudgetBytes) return;
    this.memories.clear();
    for (const entry of this.entries.values()) {
      if (this.heldBytes <= this.memoryBudgetBytes) return;
      const surplus = entry.ready.length - entry.provisioned;
      if (surplus <= 0) continue;
      let evicted = 0;
      while (evicted < surplus && this.heldBytes > this.memoryBudgetBytes) {
        this.drop(entry, 1);
        evicted++;
      }
      this.tell(entry, 0, evicted);
    }
  }

  /** Past the function cap, the least recently used function without provisioned instances goes whole. */
  private dropColdest(): void {
    if (this.entries.size < MAX_CACHED_FUNCTIONS_PER_EXECUTOR) return;
    for (const entry of this.entries.values()) {
      if (entry.provisioned > 0) continue;
      const count = entry.ready.length;
      this.forget(entry.key);
      if (count > 0) this.notify({ key: entry.key, held: { ready: 0, bytes: 0 }, reaped: 0, evicted: count });
      return;
    }
  }

  private scheduleReap(at: number): void {
    if (at >= this.reapAt) return;
    clearTimeout(this.reapTimer);
    this.reapAt = at;
    this.reapTimer = setTimeout(() => this.reap(), Math.max(0, at - performance.now()));
    this.reapTimer.unref();
  }

  private reap(): void {
    this.reapTimer = undefined;
    this.reapAt = Infinity;
    const now = performance.now();
    let next = Infinity;
    for (const entry of this.entries.values()) {
      const surplus = entry.ready.length - entry.provisioned;
      if (surplus <= 0) continue;
      const expires = entry.lastUsed + entry.idleTtlMs;
      if (expires > now) {
        next = Math.min(next, expires);
        continue;
      }
      this.drop(entry, surplus);
      this.tell(entry, surplus, 0);
    }
    if (next < Infinity) this.scheduleReap(next);
  }

  private tell(entry: Entry, reaped: number, evicted: number): void {
    entry.told = { ready: entry.ready.length, bytes: entry.readyBytes };
    this.notify({ key: entry.key, held: entry.told, reaped, evicted });
  }
}

export type { Entry as CachedFunction };
