// The Rust SDK end to end: guest-sdk/rust/examples/hello.rs (over the guest-sdk/rust crate),
// built from source with rustc by scripts/build-guests.mjs into build/guests/rust/, deployed to a real daemon.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KilnError, type KilnClient } from '../../src/client/index.js';
import { readSections } from '../../src/engine/wasm/reader.js';
import { readModuleInfo } from '../../src/engine/wasm/module-info.js';
import { guest, ROOT, startDaemon, type RunningDaemon } from '../helpers/daemon.js';

const text = (bytes: Uint8Array) => Buffer.from(bytes).toString('utf8');
const lebLength = (n: number) => Math.max(1, Math.ceil(Math.log2(n + 1) / 7));

describe('Rust SDK', () => {
  let daemon: RunningDaemon;
  let client: KilnClient;

  beforeAll(async () => {
    // One executor, so consecutive invocations reach the same instance.
    daemon = await startDaemon({ args: ['--workers', '1'] });
    client = await daemon.client();
    await client.deploy('rust-hello', guest('rust/hello.wasm'), { env: { GREETING: 'Howdy' } });
  });
  afterAll(async () => {
    await client?.close();
    await daemon?.stop();
  });

  it('upper-cases text, with one log line per call and a metered report', async () => {
    const upper = await client.invoke('rust-hello', 'hello kiln', { contentType: 'text/plain' });
    expect(text(upper.payload)).toBe('HELLO KILN');
    expect(upper.contentType).toBe('text/plain');
    expect(upper.report).toMatchObject({ function: 'rust-hello', version: 1, stderr: 'hello: handling 10 bytes\n', stdout: '' });
    expect(upper.report.fuelUsed).toBeGreaterThan(0);

    // Bytes pass through untouched, NULs and non-ASCII included; an empty body is a valid request.
    expect(text((await client.invoke('rust-hello', 'héllo\0✓')).payload)).toBe('HéLLO\0✓');
    const empty = await client.invoke('rust-hello', new Uint8Array(0));
    expect(empty.payload.length).toBe(0);
    expect(empty.contentType).toBe('text/plain');
    expect(empty.report.stderr).toBe('hello: handling 0 bytes\n');
  });

  it('greets with the configured GREETING as JSON, or Hello without it', async () => {
    const greeting = await client.invoke('rust-hello', 'greet:Ada');
    expect(greeting.contentType).toBe('application/json');
    expect(JSON.parse(text(greeting.payload))).toEqual({ greeting: 'Howdy, Ada!' });
    expect(greeting.report.stderr).toBe('hello: handling 9 bytes\n');

    await client.deploy('rust-plain', guest('rust/hello.wasm'));
    expect(JSON.parse(text((await client.invoke('rust-plain', 'greet:you')).payload))).toEqual({ greeting: 'Hello, you!' });
  });

  it('returns a handled error as GUEST_ERROR with the guest code', async () => {
    const failure = await client.invoke('rust-hello', 'fail').catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(KilnError);
    expect(failure).toMatchObject({ code: 'GUEST_ERROR', message: 'asked to fail' });
    expect((failure as KilnError).data).toMatchObject({ guestCode: 'bad_input', report: { stderr: 'hello: handling 4 bytes\n' } });
    // A handled error keeps the instance.
    expect((await client.invoke('rust-hello', 'ok')).report.cold).toBe(false);
  });

  it('turns a panic into GUEST_TRAP with the panic message in the report, then restores a fresh instance', async () => {
    const trap = await client.invoke('rust-hello', 'trap').catch((e: unknown) => e);
    expect(trap).toBeInstanceOf(KilnError);
    expect(trap).toMatchObject({ code: 'GUEST_TRAP' });
    const stderr = ((trap as KilnError).data as { report: { stderr: string } }).report.stderr;
    expect(stderr.startsWith('hello: handling 4 bytes\n')).toBe(true);
    // rustc 1.63: "thread '<unnamed>' panicked at 'asked to trap', FILE:LINE:COL"
    // (newer releases: "panicked at FILE:LINE:COL:\nasked to trap").
    expect(stderr).toContain('asked to trap');
    expect(stderr).toMatch(/panicked at (?:'asked to trap', )?guest-sdk\/rust\/examples\/hello\.rs:\d+:\d+/);

    const after = await client.invoke('rust-hello', 'again');
    expect(text(after.payload)).toBe('AGAIN');
    expect(after.report.cold).toBe(true);
  });

  it('frees what each call allocates: memory stays flat over many large calls', async () => {
    const big = Buffer.alloc(256 * 1024, 'a');
    const sizes: number[] = [];
    for (let i = 0; i < 40; i++) {
      const result = await client.invoke('rust-hello', big);
      expect(result.payload.length).toBe(big.length);
      sizes.push(result.report.memoryBytes);
    }
    // Each call holds request + response copies (about 1 MiB); were they leaked,
    // 40 calls would need over 20 MiB.
    expect(sizes.at(-1)).toBe(sizes[4]);
    expect(sizes.at(-1)!).toBeLessThan(8 * 1024 * 1024);
  });
});

describe('Rust core module', () => {
  const core = readFileSync(join(ROOT, 'build', 'guests', 'rust', 'hello.core.wasm'));

  it('is at most 100 KiB without custom sections', () => {
    const stripped = 8 + readSections(core)
      .filter((s) => s.id !== 0)
      .reduce((sum, s) => sum + 1 + lebLength(s.end - s.start) + (s.end - s.start), 0);
    expect(stripped).toBeLessThanOrEqual(100 * 1024);
  });

  it('imports only WASI preview-1 functions and exports the handler ABI', () => {
    const info = readModuleInfo(core);
    for (const imp of info.imports) expect(imp).toMatchObject({ module: 'wasi_snapshot_preview1', kind: 'func' });
    // A rustc cdylib has no _initialize (Kiln calls it only when present); the
    // linker also exports the immutable globals __data_end and __heap_base.
    const names = (kind: string) => info.exports.filter((e) => e.kind === kind).map((e) => e.name).sort();
    expect(names('func')).toEqual(['cabi_post_handle', 'cabi_realloc', 'handle']);
    expect(names('memory')).toEqual(['memory']);
    expect(names('table')).toEqual([]);
  });
});
