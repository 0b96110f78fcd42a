// Kiln's own WASI preview-1 host. Capabilities come only from the function's
// config: its env, its name as argv[0], clocks, random, and stdio bound to
// per-invocation buffers. No filesystem, sockets or host environment: every
// other call answers EBADF (no such descriptor) or ENOSYS.
import { randomFillSync } from 'node:crypto';
import { OutputCapture } from './output.js';

export const ERRNO = {
  SUCCESS: 0,
  BADF: 8,
  FAULT: 21,
  INVAL: 28,
  NOSYS: 52,
  SPIPE: 70,
} as const;

// Only wall and monotonic clocks: CPU-time clocks would leak host scheduling.
const CLOCK_REALTIME = 0;
const CLOCK_MONOTONIC = 1;
const FILETYPE_CHARACTER_DEVICE = 2;
const RIGHTS_FD_READ = 1n << 1n;
const RIGHTS_FD_WRITE = 1n << 6n;

// Counted from this process's start, not the host's boot: guests learn nothing of the host's uptime.
const MONOTONIC_ORIGIN = process.hrtime.bigint();
export const monotonicNow = (): bigint => process.hrtime.bigint() - MONOTONIC_ORIGIN;

/** Thrown by proc_exit to unwind the guest; the engine turns it into an exit code. */
export class ProcExit extends Error {
  constructor(readonly code: number) {
    super(`guest called proc_exit(${code})`);
  }
}

export interface WasiOptions {
  args: string[];
  env: Record<string, string>;
}

const encoder = new TextEncoder();

function encodeStrings(strings: string[]): { offsets: number[]; buffer: Uint8Array } {
  const encoded = strings.map((s) => encoder.encode(`${s}\0`));
  const buffer = new Uint8Array(encoded.reduce((n, e) => n + e.length, 0));
  const offsets: number[] = [];
  let offset = 0;
  for (const e of encoded) {
    offsets.push(offset);
    buffer.set(e, offset);
    offset += e.length;
  }
  return { offsets, buffer };
}

/** Calls that name a descriptor or path: with no files or sockets granted, every one answers EBADF. */
const UNSUPPORTED_FD_CALLS = [
  'fd_advise', 'fd_allocate', 'fd_datasync', 'fd_fdstat_set_rights', 'fd_filestat_get', 'fd_filestat_set_size',
  'fd_filestat_set_times', 'fd_pread', 'fd_pwrite', 'fd_readdir', 'fd_renumber', 'fd_sync', 'fd_tell',
  'path_create_directory', 'path_filestat_get', 'path_filestat_set_times', 'path_link', 'path_open', 'path_readlink',
  'path_remove_directory', 'path_rename', 'path_symlink', 'path_unlink_file', 'sock_accept', 'sock_recv', 'sock_send',
  'sock_shutdown',
] as const;

/** Every function a preview-1 guest may import from Kiln. */
export const PREVIEW1_FUNCTIONS: ReadonlySet<string> = new Set([
  'args_get', 'args_sizes_get', 'environ_get', 'environ_sizes_get', 'clock_res_get', 'clock_time_get', 'random_get',
  'fd_write', 'fd_read', 'fd_close', 'fd_seek', 'fd_fdstat_get', 'fd_fdstat_set_flags', 'fd_prestat_get',
  'fd_prestat_dir_name', 'poll_oneoff', 'proc_exit', 'proc_raise', 'sched_yield', ...UNSUPPORTED_FD_CALLS,
]);

/**
 * One host per guest instance. Stdio is rebound for every invocation
 * (`beginInvocation`), so an instance can serve many calls.
 */
export class WasiHost {
  readonly imports: Record<string, (...args: never[]) => number>;
  stdin: Uint8Array = new Uint8Array(0);
  private stdinOffset = 0;
  stdout: OutputCapture;
  stderr: OutputCapture;
  private memory: WebAssembly.Memory | undefined;
  private view: DataView = new DataView(new ArrayBuffer(0));
  private bytes: Uint8Array = new Uint8Array(0);
  private readonly args: ReturnType<typeof encodeStrings>;
  private readonly env: ReturnType<typeof encodeStrings>;

  constructor(options: WasiOptions, stdout: OutputCapture, stderr: OutputCapture) {
    this.args = encodeStrings(options.args);
    this.env = encodeStrings(Object.entries(options.env).map(([k, v]) => `${k}=${v}`));
    this.stdout = stdout;
    this.stderr = stderr;
    this.imports = this.createImports();
  }

  bindMemory(memory: WebAssembly.Memory): void {
    this.memory = memory;
    this.refreshViews();
  }

  setStdin(data: Uint8Array): void {
    this.stdin = data;
    this.stdinOffset = 0;
  }

  // memory.grow detaches the old ArrayBuffer: views are refreshed lazily on use.
  private refreshViews(): void {
    const buffer = this.memory!.buffer;
    if (this.bytes.buffer !== buffer) {
      this.view = new DataView(buffer);
      this.bytes = new Uint8Array(buffer);
    }
  }

  private mem(): DataView {
    this.refreshViews();
    return this.view;
  }

  private writeStrings(strings: ReturnType<typeof encodeStrings>, pointers: number, buffer: number): number {
    const view = this.mem();
    this.bytes.set(strings.buffer, buffer);
    strings.offsets.forEach((offset, i) => view.setUint32(pointers + i * 4, buffer + offset, true));
    return ERRNO.SUCCESS;
  }

  private writeSizes(strings: ReturnType<typeof encodeStrings>, countPtr: number, sizePtr: number): number {
    const view = this.mem();
    view.setUint32(countPtr, strings.offsets.length, true);
    view.setUint32(sizePtr, strings.buffer.length, true);
    return ERRNO.SUCCESS;
  }

  private createImports(): Record<string, (...args: never[]) => number> {
    const imports: Record<string, (...args: never[]) => number> = {
      args_get: (argv: number, buf: number) => this.writeStrings(this.args, argv, buf),
      args_sizes_get: (count: number, size: number) => this.writeSizes(this.args, count, size),
      environ_get: (environ: number, buf: number) => this.writeStrings(this.env, environ, buf),
      environ_sizes_get: (count: number, size: number) => this.writeSizes(this.env, count, size),

      clock_res_get: (id: number, resultPtr: number) => {
        if (id !== CLOCK_REALTIME && id !== CLOCK_MONOTONIC) return ERRNO.INVAL;
        this.mem().setBigUint64(resultPtr, id === CLOCK_REALTIME ? 1_000_000n : 1_000n, true);
        return ERRNO.SUCCESS;
      },
      clock_time_get: (id: number, _precision: bigint, resultPtr: number) => {
        let now: bigint;
        if (id === CLOCK_REALTIME) now = BigInt(Date.now()) * 1_000_000n;
        else if (id === CLOCK_MONOTONIC) now = monotonicNow();
        else return ERRNO.INVAL;
        this.mem().setBigUint64(resultPtr, now, true);
        return ERRNO.SUCCESS;
      },
      random_get: (buf: number, length: number) => {
        this.refreshViews();
        if (buf + length > this.bytes.length) return ERRNO.FAULT;
        randomFillSync(this.bytes, buf, length);
        return ERRNO.SUCCESS;
      },

      fd_write: (fd: number, iovs: number, iovsLength: number, writtenPtr: number) => {
        const sink = fd === 1 ? this.stdout : fd === 2 ? this.stderr : undefined;
        if (!sink) return ERRNO.BADF;
        const view = this.mem();
        let written = 0;
        for (let i = 0; i < iovsLength; i++) {
          const ptr = view.getUint32(iovs + i * 8, true);
          const len = view.getUint32(iovs + i * 8 + 4, true);
          if (ptr + len > this.bytes.length) return ERRNO.FAULT;
          sink.write(this.bytes.subarray(ptr, ptr + len));
          written += len;
        }
        view.setUint32(writtenPtr, written, true);
        return ERRNO.SUCCESS;
      },
      fd_read: (fd: number, iovs: number, iovsLength: number, readPtr: number) => {
        if (fd !== 0) return ERRNO.BADF;
        const view = this.mem();
        let total = 0;
        for (let i = 0; i < iovsLength && this.stdinOffset < this.stdin.length; i++) {
          const ptr = view.getUint32(iovs + i * 8, true);
          const len = view.getUint32(iovs + i * 8 + 4, true);
          if (ptr + len > this.bytes.length) return ERRNO.FAULT;
          const chunk = this.stdin.subarray(this.stdinOffset, this.stdinOffset + len);
          this.bytes.set(chunk, ptr);
          this.stdinOffset += chunk.length;
          total += chunk.length;
        }
        view.setUint32(readPtr, total, true);
        return ERRNO.SUCCESS;
      },
      fd_close: (fd: number) => (fd <= 2 ? ERRNO.SUCCESS : ERRNO.BADF),
      fd_seek: (fd: number) => (fd <= 2 ? ERRNO.SPIPE : ERRNO.BADF),
      fd_fdstat_get: (fd: number, statPtr: number) => {
        if (fd > 2) return ERRNO.BADF;
        const view = this.mem();
        view.setUint8(statPtr, FILETYPE_CHARACTER_DEVICE);
        view.setUint16(statPtr + 2, 0, true);
        view.setBigUint64(statPtr + 8, fd === 0 ? RIGHTS_FD_READ : RIGHTS_FD_WRITE, true);
        view.setBigUint64(statPtr + 16, 0n, true);
        return ERRNO.SUCCESS;
      },
      fd_fdstat_set_flags: (fd: number) => (fd <= 2 ? ERRNO.SUCCESS : ERRNO.BADF),
      // No preopened directories: wasi-libc stops scanning at the first EBADF.
      fd_prestat_get: () => ERRNO.BADF,
      fd_prestat_dir_name: () => ERRNO.BADF,

      poll_oneoff: () => ERRNO.NOSYS,
      proc_exit: (code: number) => {
        throw new ProcExit(code);
      },
      proc_raise: () => ERRNO.NOSYS,
      sched_yield: () => ERRNO.SUCCESS,
    };
    for (const name of UNSUPPORTED_FD_CALLS) imports[name] = () => ERRNO.BADF;
    return imports;
  }
}
