// The few WASI preview-2 functions a componentize-js (StarlingMonkey) main
// module imports directly, hosted at the canonical-ABI level like the
// preview-1 host (docs/notes/componentize-js.md): random bytes, the monotonic
// clock and pollables for timers, plus the handler world's own
// kiln:function/environment (the function's config.env). Nothing a guest
// imports can create a stream, so the stream functions trap. Capabilities
// stay Kiln's: no files, sockets or host environment.
import { randomFillSync } from 'node:crypto';
import type { FuncType, ImportInfo } from '../wasm/module-info.js';
import { monotonicNow } from './preview1.js';

/** An import the host refuses at run time (a broken handle): the guest traps. */
export class HostTrap extends Error {}

const I32 = 'i32' as const;
const I64 = 'i64' as const;
const sig = (params: ('i32' | 'i64')[], results: ('i32' | 'i64')[] = []): FuncType => ({ params, results });

/** Interface (without its @0.x version) → function → core signature. */
export const PREVIEW2_FUNCTIONS: Record<string, Record<string, FuncType>> = {
  'kiln:function/environment': { 'get-environment': sig([I32]) },
  'wasi:random/random': { 'get-random-bytes': sig([I64, I32]), 'get-random-u64': sig([], [I64]) },
  'wasi:clocks/monotonic-clock': { now: sig([], [I64]), 'subscribe-instant': sig([I64], [I32]), 'subscribe-duration': sig([I64], [I32]) },
  'wasi:io/poll': { '[resource-drop]pollable': sig([I32]), '[method]pollable.block': sig([I32]), poll: sig([I32, I32, I32]) },
  'wasi:io/streams': {
    '[resource-drop]input-stream': sig([I32]),
    '[resource-drop]output-stream': sig([I32]),
    '[method]input-stream.read': sig([I32, I64, I32]),
    '[method]input-stream.blocking-read': sig([I32, I64, I32]),
    '[method]input-stream.subscribe': sig([I32], [I32]),
    '[method]output-stream.check-write': sig([I32, I32]),
    '[method]output-stream.write': sig([I32, I32, I32, I32]),
    '[method]output-stream.blocking-flush': sig([I32, I32]),
    '[method]output-stream.subscribe': sig([I32], [I32]),
  },
};

const VERSIONED = /^(wasi:[a-z-]+\/[a-z-]+)@0\.2\.\d+$|^(kiln:function\/[a-z-]+)@0\.1\.\d+$/;
const interfaceOf = (module: string): string | undefined => {
  const match = VERSIONED.exec(module);
  return match ? (match[1] ?? match[2]) : undefined;
};

/** The preview-2 interface an import belongs to, if it is one Kiln hosts (any 0.2.x version). */
export function preview2Signature(imp: ImportInfo): FuncType | undefined {
  const name = interfaceOf(imp.module);
  return name ? PREVIEW2_FUNCTIONS[name]?.[imp.name] : undefined;
}

/** Live pollables per instance: every setTimeout makes one, and a guest that never drops them must not grow the host. */
const MAX_POLLABLES = 1024;
const MAX_RANDOM_BYTES = 1 << 20;

interface GuestExports {
  memory: WebAssembly.Memory;
  cabi_realloc(oldPtr: number, oldSize: number, align: number, newSize: number): number;
}

export class Preview2Host {
  private exports: GuestExports | undefined;
  /** Pollable handle → the monotonic time (ns) it becomes ready. */
  private readonly pollables = new Map<number, bigint>();
  private nextHandle = 1;
  private readonly sleeper = new Int32Array(new SharedArrayBuffer(4));

  constructor(private readonly env: Record<string, string> = {}) {}

  /** A string lowered into guest memory through its cabi_realloc. */
  private lowerString(text: string): [number, number] {
    const bytes = new TextEncoder().encode(text);
    const ptr = this.exports!.cabi_realloc(0, 0, 1, bytes.length) >>> 0;
    new Uint8Array(this.exports!.memory.buffer).set(bytes, ptr);
    return [ptr, bytes.length];
  }

  /** Import objects for the module's actual preview-2 imports (their names carry the version). */
  importsFor(imports: ReadonlyArray<Pick<ImportInfo, 'module' | 'name'>>): Record<string, Record<string, (...args: never[]) => unknown>> {
    const functions = this.functions();
    const out: Record<string, Record<string, (...args: never[]) => unknown>> = {};
    for (const imp of imports) {
      const name = interfaceOf(imp.module);
      const fn = name ? functions[name]?.[imp.name] : undefined;
      if (fn) (out[imp.module] ??= {})[imp.name] = fn;
    }
    return out;
  }

  /** After instantiation: lists are lowered into guest memory through its own cabi_realloc. */
  bind(exports: GuestExports): void {
    this.exports = exports;
  }

  private view(): DataView {
    return new DataView(this.exports!.memory.buffer);
  }

  private pollable(deadline: bigint): number {
    if (this.pollables.size >= MAX_POLLABLES) throw new HostTrap(`more than ${MAX_POLLABLES} live pollables`);
    const handle = this.nextHandle++;
    this.pollables.set(handle, deadline);
    return handle;
  }

  private deadlineOf(handle: number): bigint {
    const deadline = this.pollables.get(handle);
    if (deadline === undefined) throw new HostTrap(`invalid pollable handle ${handle}`);
    return deadline;
  }

  // The executor serves only this call, so the guest may really sleep; its
  // deadline still holds, because a stuck executor is terminated.
  private sleepUntil(deadline: bigint): void {
    const waitNs = deadline - monotonicNow();
    if (waitNs > 0n) Atomics.wait(this.sleeper, 0, 0, Number(waitNs / 1_000_000n) + 1);
  }

  private functions(): Record<string, Record<string, (...args: never[]) => unknown>> {
    const badStream = () => {
      throw new HostTrap('invalid stream handle: Kiln guests have no preview-2 streams');
    };
    return {
      // list<tuple<string, string>>: 16-byte elements (key ptr, len, value ptr, len).
      'kiln:function/environment': {
        'get-environment': (retptr: number) => {
          const entries = Object.entries(this.env);
          const list = this.exports!.cabi_realloc(0, 0, 4, entries.length * 16) >>> 0;
          entries.forEach(([key, value], i) => {
            const [keyPtr, keyLen] = this.lowerString(key);
            const [valuePtr, valueLen] = this.lowerString(value);
            const view = this.view();
            view.setUint32(list + i * 16, keyPtr, true);
            view.setUint32(list + i * 16 + 4, keyLen, true);
            view.setUint32(list + i * 16 + 8, valuePtr, true);
            view.setUint32(list + i * 16 + 12, valueLen, true);
          });
          const view = this.view();
          view.setUint32(retptr, list, true);
          view.setUint32(retptr + 4, entries.length, true);
        },
      },
      'wasi:random/random': {
        'get-random-bytes': (length: bigint, retptr: number) => {
          if (length > BigInt(MAX_RANDOM_BYTES)) throw new HostTrap(`get-random-bytes of ${length} bytes (limit ${MAX_RANDOM_BYTES})`);
          const size = Number(length);
          const ptr = this.exports!.cabi_realloc(0, 0, 1, size) >>> 0;
          randomFillSync(new Uint8Array(this.exports!.memory.buffer, ptr, size));
          const view = this.view();
          view.setUint32(retptr, ptr, true);
          view.setUint32(retptr + 4, size, true);
        },
        'get-random-u64': () => new DataView(randomFillSync(new Uint8Array(8)).buffer).getBigUint64(0, true),
      },
      'wasi:clocks/monotonic-clock': {
        now: () => monotonicNow(),
        'subscribe-instant': (when: bigint) => this.pollable(BigInt.asUintN(64, when)),
        'subscribe-duration': (duration: bigint) => this.pollable(monotonicNow() + BigInt.asUintN(64, duration)),
      },
      'wasi:io/poll': {
        '[resource-drop]pollable': (handle: number) => {
          if (!this.pollables.delete(handle)) throw new HostTrap(`invalid pollable handle ${handle}`);
        },
        '[method]pollable.block': (handle: number) => this.sleepUntil(this.deadlineOf(handle)),
        // poll(list<borrow<pollable>>) -> list<u32>: waits for the earliest, returns the indices ready then.
        poll: (listPtr: number, length: number, retptr: number) => {
          if (length === 0 || length > MAX_POLLABLES) throw new HostTrap(`poll of ${length} pollables (1 to ${MAX_POLLABLES})`);
          let view = this.view();
          const deadlines = Array.from({ length }, (_, i) => this.deadlineOf(view.getUint32(listPtr + i * 4, true)));
          this.sleepUntil(deadlines.reduce((a, b) => (b < a ? b : a)));
          const now = monotonicNow();
          const ready = deadlines.flatMap((deadline, i) => (deadline <= now ? [i] : []));
          const ptr = this.exports!.cabi_realloc(0, 0, 4, ready.length * 4) >>> 0;
          view = this.view();
          ready.forEach((index, i) => view.setUint32(ptr + i * 4, index, true));
          view.setUint32(retptr, ptr, true);
          view.setUint32(retptr + 4, ready.length, true);
        },
      },
      'wasi:io/streams': Object.fromEntries(Object.keys(PREVIEW2_FUNCTIONS['wasi:io/streams']!).map((name) => [name, badStream])),
    };
  }
}
