// Every guest in the repository behaves the same after Kiln's rewrites
// (memory cap, fuel metering, snapshot + restore) as the plain module it was
// deployed as: same response, content type, error and logs.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { analyze, PreparedFunction, type GuestConfig } from '../../src/engine/index.js';
import { callHandler, type HandlerExports } from '../../src/engine/handler-abi.js';
import { MemoryPool } from '../../src/engine/snapshot/memory-pool.js';
import { OutputCapture } from '../../src/engine/wasi/output.js';
import { ProcExit, WasiHost } from '../../src/engine/wasi/preview1.js';
import { Preview2Host } from '../../src/engine/wasi/preview2.js';
import { ROOT } from '../helpers/daemon.js';

const GUESTS = join(ROOT, 'build', 'guests');
const config: GuestConfig = { functionName: 'same', functionVersion: 1, env: { GREETING: 'Hi' }, memoryMb: 128, fuel: 1e10, instanceMode: 'fresh' };
const INPUTS = ['hello world', 'greet:Ada', 'fail', ''];

interface Observed {
  payload: string | null;
  contentType: string;
  error: string | null;
  stderr: string;
}

/** The plain way: the deployed module as it is, its own memory, init run, no metering. */
function plain(artifact: Uint8Array, input: string): Observed {
  const { kind, core } = analyze(artifact);
  const stdout = new OutputCapture(1 << 23, kind === 'command');
  const stderr = new OutputCapture(1 << 16, false);
  const host = new WasiHost({ args: [config.functionName], env: config.env }, stdout, stderr);
  const module = new WebAssembly.Module(core as Uint8Array<ArrayBuffer>);
  const preview2 = new Preview2Host(config.env);
  const instance = new WebAssembly.Instance(module, { wasi_snapshot_preview1: host.imports, ...preview2.importsFor(WebAssembly.Module.imports(module)) });
  host.bindMemory(instance.exports.memory as WebAssembly.Memory);
  if (kind === 'command') {
    host.setStdin(Buffer.from(input));
    let code = 0;
    try {
      (instance.exports._start as () => void)();
    } catch (error) {
      if (!(error instanceof ProcExit)) throw error;
      code = error.code;
    }
    return { payload: code ? null : stdout.text(), contentType: code ? '' : 'application/octet-stream', error: code ? 'GUEST_ERROR' : null, stderr: stderr.text() };
  }
  preview2.bind(instance.exports as unknown as HandlerExports);
  (instance.exports._initialize as (() => void) | undefined)?.();
  stderr.reset();
  const result = callHandler(instance.exports as unknown as HandlerExports, {
    body: Buffer.from(input), contentType: 'text/plain', requestId: 'r', functionName: config.functionName,
    functionVersion: 1, deadlineMs: 0, remainingFuel: BigInt(config.fuel),
  }, 1 << 23, () => new Error('too large'));
  return result.ok
    ? { payload: Buffer.from(result.body).toString(), contentType: result.contentType, error: null, stderr: stderr.text() }
    : { payload: null, contentType: '', error: 'GUEST_ERROR', stderr: stderr.text() };
}

/** Kiln's way: prepared (capped, metered, snapshotted), stored, decoded, restored into a pooled memory. */
function kiln(prepared: PreparedFunction, pool: MemoryPool, input: string): Observed {
  const instance = prepared.instantiate(pool);
  const outcome = instance.invoke({ payload: Buffer.from(input), contentType: 'text/plain', requestId: 'r', deadlineMs: 0 });
  instance.reset();
  return {
    payload: outcome.payload && Buffer.from(outcome.payload).toString(),
    contentType: outcome.contentType,
    error: outcome.error?.code ?? null,
    stderr: outcome.stderr,
  };
}

const guests = ['c', 'cpp', 'rust', 'as', 'js', 'cmd', 'component', 'command'].flatMap((dir) =>
  readdirSync(join(GUESTS, dir))
    .filter((f) => f.endsWith('.wasm') && !f.endsWith('.core.wasm'))
    .map((f) => `${dir}/${f}`),
);

describe('rewritten guests behave like the originals', () => {
  it('covers every handler and command guest in the repository', () => {
    expect(guests.length).toBeGreaterThanOrEqual(8);
  });

  it.each(guests)('%s', (file) => {
    const artifact = readFileSync(join(GUESTS, file));
    const prepared = PreparedFunction.decode(PreparedFunction.prepare(artifact, config).encode(), config);
    const pool = new MemoryPool();
    for (const input of INPUTS) {
      const observed = kiln(prepared, pool, input);
      // A command's stdout is its payload: Kiln's report keeps it out of stderr and logs alike.
      expect(observed, `input ${JSON.stringify(input)}`).toEqual(plain(artifact, input));
    }
  }, 120_000);
});
