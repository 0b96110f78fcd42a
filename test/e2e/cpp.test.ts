// The C++ SDK end to end: guest-sdk/cpp/examples/hello.cpp (over guest-sdk/cpp/kiln.hpp),
// built from source by scripts/build-guests.mjs into build/guests/cpp/, deployed to a real daemon.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KilnError, type KilnClient } from '../../src/client/index.js';
import { readSections } from '../../src/engine/wasm/reader.js';
import { readModuleInfo } from '../../src/engine/wasm/module-info.js';
import { guest, ROOT, startDaemon, type RunningDaemon } from '../helpers/daemon.js';

const text = (bytes: Uint8Array) => Buffer.from(bytes).toString('utf8');
const lebLength = (n: number) => Math.max(1, Math.ceil(Math.log2(n + 1) / 7));

describe('C++ SDK', () => {
  let daemon: RunningDaemon;
  let client: KilnClient;

  beforeAll(async () => {
    // One executor, so consecutive invocations reach the same instance.
    daemon = await startDaemon({ args: ['--workers', '1'] });
    client = await daemon.client();
    await client.deploy('cpp-hello', guest('cpp/hello.wasm'), { env: { GREETING: 'Howdy' } });
  });
  afterAll(async () => {
    await client?.close();
    await daemon?.stop();
  });

  it('upper-cases text, with one log line per call and a metered report', async () => {
    const upper = await client.invoke('cpp-hello', 'hello kiln', { contentType: 'text/plain' });
    expect(text(upper.payload)).toBe('HELLO KILN');
    expect(upper.contentType).toBe('text/plain');
    expect(upper.report).toMatchObject({ function: 'cpp-hello', version: 1, stderr: 'hello: handling 10 bytes\n', stdout: '' });
    expect(upper.report.fuelUsed).toBeGreaterThan(0);

    // Bytes pass through untouched, NULs and non-ASCII included; an empty body is a valid request.
    expect(text((await client.invoke('cpp-hello', 'héllo\0✓')).payload)).toBe('HéLLO\0✓');
    const empty = await client.invoke('cpp-hello', new Uint8Array(0));
    expect(empty.payload.length).toBe(0);
    expect(empty.contentType).toBe('text/plain');
    expect(empty.report.stderr).toBe('hello: handling 0 bytes\n');
  });

  it('greets with the configured GREETING as JSON, or Hello without it', async () => {
    const greeting = await client.invoke('cpp-hello', 'greet:Ada');
    expect(greeting.contentType).toBe('application/json');
    expect(JSON.parse(text(greeting.payload))).toEqual({ greeting: 'Howdy, Ada!' });
    expect(greeting.report.stderr).toBe('hello: handling 9 bytes\n');

    await client.deploy('cpp-plain', guest('cpp/hello.wasm'));
    expect(JSON.parse(text((await client.invoke('cpp-plain', 'greet:you')).payload))).toEqual({ greeting: 'Hello, you!' });
  });

  it('returns a handled error as GUEST_ERROR with the guest code', async () => {
    const failure = await client.invoke('cpp-hello', 'fail').catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(KilnError);
    expect(failure).toMatchObject({ code: 'GUEST_ERROR', message: 'asked to fail' });
    expect((failure as KilnError).data).toMatchObject({ guestCode: 'bad_input', report: { stderr: 'hello: handling 4 bytes\n' } });
    // A handled error keeps the instance.
    expect((await client.invoke('cpp-hello', 'ok')).report.cold).toBe(false);
  });

  it('turns abort() into GUEST_TRAP with what it logged in the report, then restores a fresh instance', async () => {
    const trap = await client.invoke('cpp-hello', 'trap').catch((e: unknown) => e);
    expect(trap).toBeInstanceOf(KilnError);
    expect(trap).toMatchObject({ code: 'GUEST_TRAP' });
    expect(((trap as KilnError).data as { report: { stderr: string } }).report.stderr).toBe('hello: handling 4 bytes\nhello: asked to trap\n');

    const after = await client.invoke('cpp-hello', 'again');
    expect(text(after.payload)).toBe('AGAIN');
    expect(after.report.cold).toBe(true);
  });

  it('frees what each call allocates: memory stays flat over many large calls', async () => {
    const big = Buffer.alloc(256 * 1024, 'a');
    const sizes: number[] = [];
    for (let i = 0; i < 40; i++) {
      const result = await client.invoke('cpp-hello', big);
      expect(result.payload.length).toBe(big.length);
      sizes.push(result.report.memoryBytes);
    }
    // Each call holds request + response copies (about 1 MiB); were they leaked,
    // 40 calls would need over 20 MiB.
    expect(sizes.at(-1)).toBe(sizes[4]);
    expect(sizes.at(-1)!).toBeLessThan(8 * 1024 * 1024);
  });
});

describe('C++ core module', () => {
  const core = readFileSync(join(ROOT, 'build', 'guests', 'cpp', 'hello.core.wasm'));

  it('is at most 100 KiB without custom sections', () => {
    const stripped = 8 + readSections(core)
      .filter((s) => s.id !== 0)
      .reduce((sum, s) => sum + 1 + lebLength(s.end - s.start) + (s.end - s.start), 0);
    expect(stripped).toBeLessThanOrEqual(100 * 1024);
  });

  it('imports only WASI preview-1 functions and exports the handler ABI', () => {
    const info = readModuleInfo(core);
    for (const imp of info.imports) expect(imp).toMatchObject({ module: 'wasi_snapshot_preview1', kind: 'func' });
    expect(info.exports.map((e) => e.name).sort()).toEqual(['_initialize', 'cabi_post_handle', 'cabi_realloc', 'handle', 'memory']);
  });
});
