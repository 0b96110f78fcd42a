// The engine's two halves, after Wasmtime's split: a PreparedFunction is
// compiled once and shared; a GuestInstance is cheap, per-call state that is
// thrown away after any fault.
import { MAX_LOG_BYTES, MAX_PAYLOAD_BYTES } from '../limits.js';
import { GuestError, KilnError, PayloadTooLargeError, UnsupportedWasmError, type WireError } from '../protocol/errors.js';
import { DEFAULT_CONTENT_TYPE, type GuestKind, type InstanceMode } from '../protocol/methods.js';
import { analyze, WASI_PREVIEW1 } from './analyze.js';
import { classifyFault } from './faults.js';
import { callHandler, type HandlerExports } from './handler-abi.js';
import { FUEL_GLOBAL_EXPORT, instrumentFuel } from './fuel/instrument.js';
import type { MemoryPool } from './snapshot/memory-pool.js';
import { SnapshotError } from './snapshot/rewrite.js';
import { restoreSnapshot, takeSnapshot, type Snapshot } from './snapshot/snapshot.js';
import { decodeImage, encodeImage } from './snapshot/image.js';
import { decodePrepared, encodePrepared } from './prepared-form.js';
import { capMemory, MemoryCapError, WASM_PAGE_BYTES } from './wasm/memory-cap.js';
import type { ModuleInfo } from './wasm/module-info.js';
import { OutputCapture } from './wasi/output.js';
import { ProcExit, WasiHost } from './wasi/preview1.js';
import { Preview2Host } from './wasi/preview2.js';

export interface GuestConfig {
  functionName: string;
  functionVersion: number;
  env: Record<string, string>;
  memoryMb: number;
  fuel: number;
  /** Whether an instance may serve more than one invocation (see protocol INSTANCE_MODES). */
  instanceMode: InstanceMode;
}

export interface Invocation {
  payload: Uint8Array;
  contentType: string;
  requestId: string;
  /** Wall-clock deadline, ms since the epoch, passed to the guest. */
  deadlineMs: number;
}

export interface Metering {
  durationMs: number;
  fuelUsed: number;
  cold: boolean;
  initUs: number;
  memoryBytes: number;
}

export interface InvocationOutcome {
  payload: Uint8Array | null;
  contentType: string;
  error: WireError | null;
  metering: Metering;
  stdout: string;
  stderr: string;
  logsTruncated: boolean;
}

/**
 * A trap with memory this close to the limit is reported as MEMORY_LIMIT:
 * allocators grow in steps (dlmalloc by its request, SpiderMonkey by
 * megabytes), so an out-of-memory crash rarely happens at the last page.
 */
const MEMORY_LIMIT_FRACTION = 0.8;
/** What a restored handler instance needs to export; every other export only slows instantiation. */
const HANDLER_RUNTIME_EXPORTS = ['handle', 'cabi_realloc', 'cabi_post_handle', 'memory', FUEL_GLOBAL_EXPORT];

/** How a prepared function makes instances: commands start afresh, components restore a snapshot. */
type Code = { kind: 'command'; module: WebAssembly.Module; bytes: Uint8Array } | { kind: 'component'; snapshot: Snapshot };
const nowUs = () => performance.now() * 1000;

export class PreparedFunction {
  private constructor(
    readonly code: Code,
    readonly config: GuestConfig,
  ) {}

  get kind(): GuestKind {
    return this.code.kind;
  }

  /**
   * Validates, classifies, rewrites (memory cap, fuel metering) and compiles an
   * artifact; for a component, also runs its initialisation once and keeps the
   * snapshot. Throws KilnError for anything a client should hear about.
   */
  static prepare(artifact: Uint8Array, config: GuestConfig): PreparedFunction {
    const analysis = analyze(artifact);
    const maxPages = Math.floor((config.memoryMb * 2 ** 20) / WASM_PAGE_BYTES);
    let core: Uint8Array;
    try {
      core = instrumentFuel(capMemory(analysis.core, maxPages));
    } catch (error) {
      if (error instanceof MemoryCapError) throw new UnsupportedWasmError(error.message);
      if (error instanceof Error && error.name === 'WasmFormatError') {
        throw new UnsupportedWasmError(`Kiln cannot meter this module: ${error.message}`);
      }
      throw error;
    }
    if (analysis.kind === 'command') {
      return new PreparedFunction({ kind: 'command', module: new WebAssembly.Module(core as Uint8Array<ArrayBuffer>), bytes: core }, config);
    }
    return new PreparedFunction({ kind: 'component', snapshot: snapshotComponent(core, analysis.info, maxPages, config) }, config);
  }

  /** The stored form (see prepared-form.ts): compiling it skips analysis, rewriting and init. */
  encode(): Uint8Array {
    if (this.code.kind === 'command') return encodePrepared({ kind: 'command', module: this.code.bytes });
    const { moduleBytes, image, globals, maxPages } = this.code.snapshot;
    return encodePrepared({ kind: 'component', module: moduleBytes, snapshot: { image: encodeImage(image), globals, maxPages } });
  }

  static decode(stored: Uint8Array, config: GuestConfig): PreparedFunction {
    const parts = decodePrepared(stored);
    const module = new WebAssembly.Module(parts.module as Uint8Array<ArrayBuffer>);
    if (!parts.snapshot) return new PreparedFunction({ kind: 'command', module, bytes: parts.module }, config);
    const { image, globals, maxPages } = parts.snapshot;
    return new PreparedFunction(
      {
        kind: 'component',
        snapshot: { module, moduleBytes: parts.module, imports: WebAssembly.Module.imports(module), image: decodeImage(image), globals, maxPages },
      },
      config,
    );
  }

  /** A new instance; components take their memory from `pool` and give it back on reset(). */
  instantiate(pool: MemoryPool): GuestInstance {
    return this.code.kind === 'component'
      ? new ComponentInstance(this, this.code.snapshot, pool)
      : new CommandInstance(this, this.code.module);
  }
}

const responseTooLarge = (size: number) =>
  new PayloadTooLargeError(`the guest's response is ${size} bytes; the limit is ${MAX_PAYLOAD_BYTES}`, { limit: MAX_PAYLOAD_BYTES });

/** What a guest's throw means, read off its fuel counter and memory at the time. */
function guestFault(error: unknown, fuel: WebAssembly.Global | undefined, memory: WebAssembly.Memory | undefined, memoryMb: number): KilnError {
  const limit = memoryMb * 2 ** 20;
  return classifyFault(error, {
    fuelExhausted: fuel !== undefined && (fuel.value as bigint) < 0n,
    memoryAtLimit: (memory?.buffer.byteLength ?? 0) >= limit * MEMORY_LIMIT_FRACTION,
    memoryLimitBytes: limit,
  });
}

/** Runs a component's init under its fuel budget and captures the result; faults become deploy errors. */
function snapshotComponent(core: Uint8Array, info: ModuleInfo, maxPages: number, config: GuestConfig): Snapshot {
  const stdout = new OutputCapture(MAX_LOG_BYTES, false);
  const stderr = new OutputCapture(MAX_LOG_BYTES, false);
  const host = new WasiHost({ args: [config.functionName], env: config.env }, stdout, stderr);
  const preview2 = new Preview2Host(config.env);
  let fuel: WebAssembly.Global | undefined;
  let memory: WebAssembly.Memory | undefined;
  try {
    // cabi_post_handle is optional in the canonical ABI: keep only what the module has.
    const keep = HANDLER_RUNTIME_EXPORTS.filter((name) => name === FUEL_GLOBAL_EXPORT || info.exports.some((e) => e.name === name));
    const snapshot = takeSnapshot(core, maxPages, keep, {
      imports: { [WASI_PREVIEW1]: host.imports, ...preview2.importsFor(info.imports) },
      beforeInit: (instance) => {
        preview2.bind(instance.exports as unknown as HandlerExports);
        memory = instance.exports.memory as WebAssembly.Memory;
        fuel = instance.exports[FUEL_GLOBAL_EXPORT] as WebAssembly.Global;
        host.bindMemory(memory);
        fuel.value = BigInt(config.fuel);
      },
    });
    if (fuel && (fuel.value as bigint) < 0n) throw new Error('fuel exhausted');
    return snapshot;
  } catch (error) {
    if (error instanceof SnapshotError) throw new UnsupportedWasmError(`Kiln cannot snapshot this guest: ${error.message}`);
    const fault = guestFault(error, fuel, memory, config.memoryMb);
    const output = stderr.text();
    throw new KilnError(fault.code, `the guest's initialisation failed: ${fault.message}`, { stderr: output });
  }
}

/**
 * The host side of one guest instance: its WASI hosts and output buffers,
 * made once, and the Wasm instance they serve, which reset() drops.
 */
export interface GuestInstance {
  /** False once the Wasm instance faulted: reset() before the next invoke. */
  readonly healthy: boolean;
  /** Whether a Wasm instance is in place, so the next invoke starts warm. */
  readonly ready: boolean;
  /** Bytes of linear memory the instance holds now (0 when not ready). */
  readonly memoryBytes: number;
  /** Creates the Wasm instance now, ahead of the invocation that will use it (a no-op when ready). */
  warm(): void;
  invoke(invocation: Invocation): InvocationOutcome;
  /** Drops the Wasm instance and gives back its pooled memory; the next invoke is a cold start. */
  reset(): void;
}

abstract class BaseInstance implements GuestInstance {
  healthy = true;
  protected readonly stdout: OutputCapture;
  protected readonly stderr = new OutputCapture(MAX_LOG_BYTES, false);
  protected readonly host: WasiHost;
  protected memory: WebAssembly.Memory | undefined;
  /** The instrumented module's fuel counter (see src/engine/fuel/instrument.ts). */
  protected fuel: WebAssembly.Global | undefined;
  protected readonly budget: bigint;

  constructor(
    protected readonly prepared: PreparedFunction,
    private readonly stdoutIsResponse: boolean,
  ) {
    this.stdout = stdoutIsResponse ? new OutputCapture(MAX_PAYLOAD_BYTES, true) : new OutputCapture(MAX_LOG_BYTES, false);
    this.host = new WasiHost({ args: [prepared.config.functionName], env: prepared.config.env }, this.stdout, this.stderr);
    this.budget = BigInt(prepared.config.fuel);
  }

  protected bind(instance: WebAssembly.Instance): void {
    this.memory = instance.exports.memory as WebAssembly.Memory;
    this.fuel = instance.exports[FUEL_GLOBAL_EXPORT] as WebAssembly.Global;
    this.host.bindMemory(this.memory);
  }

  get memoryBytes(): number {
    return this.memory?.buffer.byteLength ?? 0;
  }

  reset(): void {
    this.memory = undefined;
    this.fuel = undefined;
    this.healthy = true;
  }

  /** Arms the fuel counter with the invocation's budget. */
  protected refuel(): void {
    this.fuel!.value = this.budget;
  }

  /** Fuel used since refuel(), capped at the budget (an exhausted guest overshoots by its last block). */
  protected fuelUsed(): number {
    if (!this.fuel) return 0;
    const left = this.fuel.value as bigint;
    return Number(left < 0n ? this.budget : this.budget - left);
  }

  protected get fuelExhausted(): boolean {
    return this.fuel !== undefined && (this.fuel.value as bigint) < 0n;
  }

  protected fault(error: unknown): KilnError {
    this.healthy = false;
    return guestFault(error, this.fuel, this.memory, this.prepared.config.memoryMb);
  }

  protected finish(
    started: number,
    cold: boolean,
    initUs: number,
    result: { payload: Uint8Array; contentType: string } | KilnError,
  ): InvocationOutcome {
    const outcome: InvocationOutcome = {
      payload: result instanceof KilnError ? null : result.payload,
      contentType: result instanceof KilnError ? '' : result.contentType,
      error: result instanceof KilnError ? result.toWire() : null,
      metering: {
        durationMs: (nowUs() - started) / 1000,
        fuelUsed: this.fuelUsed(),
        cold,
        initUs,
        memoryBytes: this.memory?.buffer.byteLength ?? 0,
      },
      // A command's stdout is its response, not a log.
      stdout: this.stdoutIsResponse ? '' : this.stdout.text(),
      stderr: this.stderr.text(),
      logsTruncated: this.stdout.truncated || this.stderr.truncated,
    };
    this.stdout.reset();
    this.stderr.reset();
    return outcome;
  }

  abstract readonly ready: boolean;
  abstract warm(): void;
  abstract invoke(invocation: Invocation): InvocationOutcome;
}

/** A handler component: restored from its snapshot (ahead of time, or on first use), then serves calls until it faults. */
class ComponentInstance extends BaseInstance {
  private exports: HandlerExports | undefined;
  private initUs = 0;

  constructor(
    prepared: PreparedFunction,
    private readonly snapshot: Snapshot,
    private readonly pool: MemoryPool,
  ) {
    super(prepared, false);
  }

  // The cold start: no init runs here, it ran once when the snapshot was taken.
  private start(): HandlerExports {
    const began = nowUs();
    const preview2 = new Preview2Host(this.prepared.config.env);
    const imports = { [WASI_PREVIEW1]: this.host.imports, ...preview2.importsFor(this.snapshot.imports) };
    const { instance } = restoreSnapshot(this.snapshot, this.pool, imports);
    this.bind(instance);
    preview2.bind(instance.exports as unknown as HandlerExports);
    this.initUs = nowUs() - began;
    return instance.exports as unknown as HandlerExports;
  }

  get ready(): boolean {
    return this.exports !== undefined;
  }

  warm(): void {
    this.exports ??= this.start();
  }

  override reset(): void {
    if (this.memory) this.pool.release(this.memory);
    super.reset();
    this.exports = undefined;
  }

  invoke(invocation: Invocation): InvocationOutcome {
    const started = nowUs();
    // Cold means this invocation paid for the restore; one done ahead of time by warm() is not on its path.
    const cold = this.exports === undefined;
    let result: { payload: Uint8Array; contentType: string } | KilnError;
    try {
      this.exports ??= this.start();
      this.refuel();
      const handled = callHandler(
        this.exports,
        {
          body: invocation.payload,
          contentType: invocation.contentType,
          requestId: invocation.requestId,
          functionName: this.prepared.config.functionName,
          functionVersion: this.prepared.config.functionVersion,
          deadlineMs: invocation.deadlineMs,
          remainingFuel: this.budget,
        },
        MAX_PAYLOAD_BYTES,
        responseTooLarge,
      );
      // A guest can return having overrun its budget by less than one
      // unchecked stretch of code: that is still exhaustion.
      if (this.fuelExhausted) throw new Error('fuel exhausted');
      result = handled.ok
        ? { payload: handled.body, contentType: handled.contentType }
        : new GuestError(handled.message, { guestCode: handled.code });
    } catch (error) {
      result = this.fault(error);
    }
    return this.finish(started, cold, cold ? this.initUs : 0, result);
  }
}

/**
 * A preview-1 command runs once per Wasm instance: every invocation gets a new
 * one (its executor resets it after). Nothing runs before _start, so an
 * instance can still be made ahead of time by warm().
 */
class CommandInstance extends BaseInstance {
  private instance: WebAssembly.Instance | undefined;
  private initUs = 0;

  constructor(
    prepared: PreparedFunction,
    private readonly module: WebAssembly.Module,
  ) {
    super(prepared, true);
  }

  get ready(): boolean {
    return this.instance !== undefined;
  }

  warm(): void {
    if (this.instance) return;
    const began = nowUs();
    this.instance = new WebAssembly.Instance(this.module, { [WASI_PREVIEW1]: this.host.imports });
    this.bind(this.instance);
    this.initUs = nowUs() - began;
  }

  override reset(): void {
    super.reset();
    this.instance = undefined;
  }

  invoke(invocation: Invocation): InvocationOutcome {
    const started = nowUs();
    const cold = this.instance === undefined;
    let result: { payload: Uint8Array; contentType: string } | KilnError;
    try {
      this.warm();
      const instance = this.instance!;
      this.host.setStdin(invocation.payload);
      this.refuel();
      let exitCode = 0;
      try {
        (instance.exports._start as () => void)();
      } catch (error) {
        if (!(error instanceof ProcExit)) throw error;
        exitCode = error.code;
      }
      if (this.fuelExhausted) throw new Error('fuel exhausted');
      result =
        exitCode === 0
          ? { payload: this.stdout.bytes(), contentType: DEFAULT_CONTENT_TYPE }
          : new GuestError(`the command exited with status ${exitCode}`, { exitCode });
    } catch (error) {
      result = this.fault(error);
    }
    this.host.setStdin(new Uint8Array(0));
    return this.finish(started, cold, cold ? this.initUs : 0, result);
  }
}
