// One table for every guest SDK: each language's example implements the same
// demo spec (guest-sdk/*/examples/hello.*), is built from source by
// scripts/build-guests.mjs and must behave identically in a real daemon.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KilnError, type KilnClient } from '../../src/client/index.js';
import { readModuleInfo } from '../../src/engine/wasm/module-info.js';
import { readSections } from '../../src/engine/wasm/reader.js';
import { guest, ROOT, startDaemon, type RunningDaemon } from '../helpers/daemon.js';

interface Sdk {
  lang: string;
  /** build/guests/<dir>/hello.wasm and hello.core.wasm */
  dir: string;
  /** What the guest's stderr holds after a `trap` call. */
  trapStderr: RegExp;
  /** Languages whose heap is managed by a GC grow in steps; the others must stay exactly flat. */
  garbageCollected?: boolean;
  /** componentize-js makes the component directly: there is no separate small core module. */
  hasCore?: boolean;
}

const SDKS: Sdk[] = [
  { lang: 'C', dir: 'c', trapStderr: /^hello: handling 4 bytes\nhello: asked to trap\n$/ },
  { lang: 'C++', dir: 'cpp', trapStderr: /^hello: handling 4 bytes\nhello: asked to trap\n$/ },
  {
    lang: 'Rust',
    dir: 'rust',
    // rustc 1.63: "thread '<unnamed>' panicked at 'asked to trap', FILE:LINE:COL" (newer: "panicked at FILE:LINE:COL:\nasked to trap")
    trapStderr:
      /^hello: handling 4 bytes\n[^]*panicked at (?:'asked to trap', guest-sdk\/rust\/examples\/hello\.rs:\d+:\d+|guest-sdk\/rust\/examples\/hello\.rs:\d+:\d+:\nasked to trap)/,
  },
  {
    lang: 'AssemblyScript',
    dir: 'as',
    trapStderr: /^hello: handling 4 bytes\nabort: asked to trap in guest-sdk\/assemblyscript\/examples\/hello\.ts\(\d+:\d+\)\n$/,
  },
  { lang: 'JavaScript', dir: 'js', trapStderr: /^hello: handling 4 bytes\nuncaught exception: asked to trap\n/, garbageCollected: true, hasCore: false },
].map((sdk) => ({ garbageCollected: false, hasCore: true, ...sdk }));

const text = (bytes: Uint8Array) => Buffer.from(bytes).toString('utf8');
const lebLength = (n: number) => Math.max(1, Math.ceil(Math.log2(n + 1) / 7));

describe.each(SDKS)('$lang SDK example', ({ dir, trapStderr, garbageCollected, hasCore }) => {
  let daemon: RunningDaemon;
  let client: KilnClient;
  const name = `${dir}-hello`;

  beforeAll(async () => {
    // One executor, so consecutive invocations reach the same instance.
    daemon = await startDaemon({ args: ['--workers', '1'] });
    client = await daemon.client();
    await client.deploy(name, guest(`${dir}/hello.wasm`), { env: { GREETING: 'Howdy' } });
  });
  afterAll(async () => {
    await client?.close();
    await daemon?.stop();
  });

  it('upper-cases text, with one log line per call and a metered report', async () => {
    const upper = await client.invoke(name, 'hello kiln', { contentType: 'text/plain' });
    expect(text(upper.payload)).toBe('HELLO KILN');
    expect(upper.contentType).toBe('text/plain');
    expect(upper.report).toMatchObject({ function: name, version: 1, stderr: 'hello: handling 10 bytes\n', stdout: '' });
    expect(upper.report.fuelUsed).toBeGreaterThan(0);
    // Bytes pass through untouched, NULs and non-ASCII included; an empty body is a valid request.
    expect(text((await client.invoke(name, 'héllo\0✓')).payload)).toBe('HéLLO\0✓');
    const empty = await client.invoke(name, new Uint8Array(0));
    expect(empty.payload.length).toBe(0);
    expect(empty.report.stderr).toBe('hello: handling 0 bytes\n');
  });

  it('greets with the configured GREETING as JSON, or Hello without it', async () => {
    const greeting = await client.invoke(name, 'greet:Ada');
    expect(greeting.contentType).toBe('application/json');
    expect(JSON.parse(text(greeting.payload))).toEqual({ greeting: 'Howdy, Ada!' });
    await client.deploy(`${name}-plain`, guest(`${dir}/hello.wasm`));
    expect(JSON.parse(text((await client.invoke(`${name}-plain`, 'greet:you')).payload))).toEqual({ greeting: 'Hello, you!' });
  });

  it('returns a handled error as GUEST_ERROR with the guest code, keeping the instance', async () => {
    const failure = await client.invoke(name, 'fail').catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(KilnError);
    expect(failure).toMatchObject({ code: 'GUEST_ERROR', message: 'asked to fail' });
    expect((failure as KilnError).data).toMatchObject({ guestCode: 'bad_input', report: { stderr: 'hello: handling 4 bytes\n' } });
    expect((await client.invoke(name, 'ok')).report.cold).toBe(false);
  });

  it('turns a crash into GUEST_TRAP with its stderr, then restores a fresh instance', async () => {
    const trap = await client.invoke(name, 'trap').catch((e: unknown) => e);
    expect(trap).toMatchObject({ code: 'GUEST_TRAP' });
    expect(((trap as KilnError).data as { report: { stderr: string } }).report.stderr).toMatch(trapStderr);
    const after = await client.invoke(name, 'again');
    expect(text(after.payload)).toBe('AGAIN');
    // The executor restored the replacement after answering the trap, off this invocation's path.
    expect(after.report.cold).toBe(false);
    expect((await client.get(name)).live).toMatchObject({ instances: 1, coldStarts: 1 });
  });

  // 300 calls of 256 KiB through an interpreter without a JIT (JavaScript) take about a minute here.
  it('frees what each call allocates: memory stays flat over many large calls', { timeout: 180_000 }, async () => {
    const big = Buffer.alloc(256 * 1024, 'a');
    // A garbage collector frees late: enough calls that a leak (~0.5 MiB each) would pass the 128 MiB cap.
    const calls = garbageCollected ? 300 : 40;
    const sizes: number[] = [];
    for (let i = 0; i < calls; i++) {
      const result = await client.invoke(name, big);
      expect(result.payload.length).toBe(big.length);
      sizes.push(result.report.memoryBytes);
    }
    if (garbageCollected) expect(sizes.at(-1)!).toBeLessThan(96 * 1024 * 1024);
    else {
      // Without a GC the heap must be exactly where it was after a few calls, and small.
      expect(sizes.at(-1)).toBe(sizes[4]);
      expect(sizes.at(-1)!).toBeLessThan(8 * 1024 * 1024);
    }
  });

  it.skipIf(!hasCore)('has a core module of at most 100 KiB that imports only WASI preview 1 and exports the handler ABI', () => {
    const core = readFileSync(join(ROOT, 'build', 'guests', dir, 'hello.core.wasm'));
    const stripped =
      8 + readSections(core).filter((s) => s.id !== 0).reduce((sum, s) => sum + 1 + lebLength(s.end - s.start) + (s.end - s.start), 0);
    expect(stripped).toBeLessThanOrEqual(100 * 1024);
    const info = readModuleInfo(core);
    for (const imp of info.imports) expect(imp).toMatchObject({ module: 'wasi_snapshot_preview1', kind: 'func' });
    const exported = info.exports.filter((e) => e.kind === 'func' || e.kind === 'memory').map((e) => e.name);
    expect(exported).toEqual(expect.arrayContaining(['handle', 'cabi_realloc', 'cabi_post_handle', 'memory']));
  });
});

// The same spec through the preview-1 command contract (guest-sdk/command/):
// stdout is the payload, a non-zero exit status the error.
describe('preview-1 command example', () => {
  let daemon: RunningDaemon;
  let client: KilnClient;

  beforeAll(async () => {
    daemon = await startDaemon();
    client = await daemon.client();
    await client.deploy('cmd-hello', guest('cmd/hello.wasm'), { env: { GREETING: 'Howdy' } });
  });
  afterAll(async () => {
    await client?.close();
    await daemon?.stop();
  });

  it('implements the demo spec with stdin, stdout, stderr and its exit status', async () => {
    const upper = await client.invoke('cmd-hello', 'hello kiln');
    expect(text(upper.payload)).toBe('HELLO KILN');
    expect(upper.contentType).toBe('application/octet-stream');
    expect(upper.report).toMatchObject({ stderr: 'hello: handling 10 bytes\n', stdout: '', cold: true });
    expect(JSON.parse(text((await client.invoke('cmd-hello', 'greet:Ada')).payload))).toEqual({ greeting: 'Howdy, Ada!' });
    const failure = await client.invoke('cmd-hello', 'fail').catch((e: unknown) => e);
    expect(failure).toMatchObject({ code: 'GUEST_ERROR', data: { exitCode: 1, report: { stderr: 'hello: handling 4 bytes\nasked to fail\n' } } });
    const trap = await client.invoke('cmd-hello', 'trap').catch((e: unknown) => e);
    expect(trap).toMatchObject({ code: 'GUEST_TRAP', data: { report: { stderr: 'hello: handling 4 bytes\nhello: asked to trap\n' } } });
    expect(text((await client.invoke('cmd-hello', 'again')).payload)).toBe('AGAIN');
  });
});
