// Bad input from clients and guests: each gets a stable error code, and the
// daemon serves the next request as if nothing happened.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encode, encodeRequest, type Message } from '../../src/protocol/codec.js';
import { MAX_PAYLOAD_BYTES } from '../../src/limits.js';
import type { KilnClient } from '../../src/client/index.js';
import { guest, startDaemon, type RunningDaemon } from '../helpers/daemon.js';
import { openRaw, type RawSocket } from '../helpers/raw-socket.js';

const text = (bytes: Uint8Array) => Buffer.from(bytes).toString('utf8');

/** (module (import MODULE NAME (func)) (func (export "_start"))), assembled by hand. */
function wasmModule(module: string, name: string): Buffer {
  const str = (s: string) => [s.length, ...Buffer.from(s)];
  const section = (id: number, body: number[]) => [id, body.length, ...body];
  return Buffer.from([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, [1, 0x60, 0, 0]),
    ...section(2, [1, ...str(module), ...str(name), 0x00, 0]),
    ...section(3, [1, 0]),
    ...section(7, [1, ...str('_start'), 0x00, 1]),
    ...section(10, [1, 2, 0, 0x0b]),
  ]);
}

describe('bad input', () => {
  let daemon: RunningDaemon;
  let client: KilnClient;
  let raw: RawSocket;

  beforeAll(async () => {
    daemon = await startDaemon();
    client = await daemon.client();
    await client.deploy('kit', guest('component/testkit.wasm'), { memoryMb: 16 });
    await client.deploy('cmd', guest('command/echo-command.wasm'));
    await client.deploy('stuck', guest('component/testkit.wasm'), { timeoutMs: 1000 });
    await client.deploy('frugal', guest('component/testkit.wasm'), { fuel: 5_000_000 });
    raw = await openRaw(daemon.url, daemon.token);
  });
  afterAll(async () => {
    raw?.close();
    await client?.close();
    await daemon?.stop();
  });

  /** The daemon still answers a good request on the same raw connection and on the client's. */
  async function stillServes(): Promise<void> {
    raw.send(encodeRequest(999, 'invoke', [{ function: 'kit', payload: Buffer.from('ping') }]));
    const answer = (await raw.next()) as Extract<Message, { type: 1 }>;
    expect(answer).toMatchObject({ type: 1, id: 999, error: null });
    expect(text((answer.result as { payload: Uint8Array }).payload)).toBe('ping');
    expect(text((await client.invoke('kit', 'pong')).payload)).toBe('pong');
  }

  async function expectNotification(code: string): Promise<void> {
    const message = await raw.next();
    expect(message).toMatchObject({ type: 2, method: 'kiln.error', params: [{ code }] });
  }

  async function expectError(id: number, code: string): Promise<Extract<Message, { type: 1 }>> {
    const message = (await raw.next()) as Extract<Message, { type: 1 }>;
    expect(message).toMatchObject({ type: 1, id, error: { code }, result: null });
    expect(typeof message.error!.message).toBe('string');
    return message;
  }

  it('malformed MessagePack frame → MALFORMED_FRAME', async () => {
    raw.send(new Uint8Array([0x93, 0x00, 0x01])); // an array of 3 with only 2 elements
    await expectNotification('MALFORMED_FRAME');
    await stillServes();
  });

  it('valid MessagePack that is not a message → INVALID_MESSAGE', async () => {
    raw.send(encode({ hello: 'world' }));
    await expectNotification('INVALID_MESSAGE');
    raw.send(encode([0, 7, 42, []])); // method is not a string: the msgid is readable, so it is answered
    await expectError(7, 'INVALID_MESSAGE');
    raw.send(encode([1, 8, null, null])); // clients may not send responses
    await expectNotification('INVALID_MESSAGE');
    await stillServes();
  });

  it('unknown method → METHOD_NOT_FOUND', async () => {
    raw.send(encodeRequest(10, 'functions.explode', [{}]));
    await expectError(10, 'METHOD_NOT_FOUND');
    await stillServes();
  });

  it('missing or ill-typed params → INVALID_ARGUMENT', async () => {
    raw.send(encodeRequest(11, 'invoke', []));
    await expectError(11, 'INVALID_ARGUMENT');
    raw.send(encodeRequest(12, 'invoke', [{ function: 42 }]));
    await expectError(12, 'INVALID_ARGUMENT');
    raw.send(encodeRequest(13, 'invoke', [{ function: 'kit', payload: 'a string, not bin' }]));
    await expectError(13, 'INVALID_ARGUMENT');
    raw.send(encodeRequest(14, 'functions.deploy', [{ name: 'x' }]));
    await expectError(14, 'INVALID_ARGUMENT');
    raw.send(encodeRequest(15, 'functions.deploy', [{ name: '../etc', wasm: Buffer.from('x') }]));
    await expectError(15, 'INVALID_ARGUMENT');
    await expect(client.deploy('cfg', guest('c/hello.wasm'), { timeoutMs: 10 ** 9 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(client.deploy('cfg', guest('c/hello.wasm'), { env: { 'BAD KEY': 'x' } })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await stillServes();
  });

  it('unknown function → NOT_FOUND', async () => {
    await expect(client.invoke('no-such-function', 'x')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await stillServes();
  });

  it('invalid Wasm bytes → INVALID_WASM, and nothing is stored', async () => {
    await expect(client.deploy('junk', Buffer.from('definitely not wasm'))).rejects.toMatchObject({ code: 'INVALID_WASM' });
    const truncated = guest('c/hello.wasm').subarray(0, 5000);
    await expect(client.deploy('junk', truncated)).rejects.toMatchObject({ code: 'INVALID_WASM' });
    const corrupt = Buffer.from(guest('command/echo-command.wasm'));
    corrupt.fill(0xff, 2000, 2100);
    await expect(client.deploy('junk', corrupt)).rejects.toMatchObject({ code: 'INVALID_WASM' });
    await expect(client.get('junk')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await stillServes();
  });

  it('a module Kiln cannot link → UNSUPPORTED_WASM at deploy, not at invoke', async () => {
    const bytes = wasmModule('wasi_snapshot_preview1', 'sock_open');
    await expect(client.deploy('unlinkable', bytes)).rejects.toMatchObject({
      code: 'UNSUPPORTED_WASM',
      message: expect.stringContaining('wasi_snapshot_preview1.sock_open'),
    });
    await expect(client.deploy('foreign', wasmModule('env', 'host_secret'))).rejects.toMatchObject({ code: 'UNSUPPORTED_WASM' });
    await stillServes();
  });

  it('a component that does not export the handler → UNSUPPORTED_WASM', async () => {
    await expect(client.deploy('other', guest('other-world/ping.wasm'))).rejects.toMatchObject({
      code: 'UNSUPPORTED_WASM',
      message: expect.stringContaining('kiln:function/handler'),
    });
    await stillServes();
  });

  it('payload over the limit → PAYLOAD_TOO_LARGE', async () => {
    const big = Buffer.alloc(MAX_PAYLOAD_BYTES + 1, 0x61);
    await expect(client.invoke('kit', big)).rejects.toMatchObject({ code: 'PAYLOAD_TOO_LARGE', data: { limit: MAX_PAYLOAD_BYTES } });
    // A response over the limit is refused the same way.
    await expect(client.invoke('kit', 'big-response')).rejects.toMatchObject({ code: 'PAYLOAD_TOO_LARGE' });
    await stillServes();
  });

  it('text frame → UNSUPPORTED_FRAME', async () => {
    raw.send('[0, 1, "invoke", []]');
    await expectNotification('UNSUPPORTED_FRAME');
    await stillServes();
  });

  it('a guest that traps → GUEST_TRAP with its stderr', async () => {
    const error = await client.invoke('kit', 'trap').catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'GUEST_TRAP', data: { report: { stderr: 'about to trap\n' } } });
    await expect(client.invoke('cmd', 'trap')).rejects.toMatchObject({ code: 'GUEST_TRAP' });
    await expect(client.invoke('kit', 'exit')).rejects.toMatchObject({ code: 'GUEST_TRAP', data: { exitCode: 3 } });
    await stillServes();
  });

  it('a guest that overflows the stack → STACK_OVERFLOW', async () => {
    await expect(client.invoke('kit', 'recurse')).rejects.toMatchObject({ code: 'STACK_OVERFLOW' });
    await stillServes();
  });

  it('a guest that exhausts its memory limit sees out-of-memory, not the daemon', async () => {
    const error = await client.invoke('kit', 'memory-bomb').catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'GUEST_ERROR', data: { guestCode: 'oom' } });
    expect((error as { data: { report: { memoryBytes: number } } }).data.report.memoryBytes).toBeLessThanOrEqual(16 * 2 ** 20);
    await stillServes();
  });

  it('a guest that never returns → TIMEOUT at its deadline; health and other functions are unaffected', async () => {
    const started = Date.now();
    const stuck = client.invoke('stuck', 'loop').catch((e: unknown) => e);
    // Sent in the same breath, these may be queued on the stuck executor: they must
    // not be lost or failed with it, but run elsewhere or after its replacement.
    const behind = Array.from({ length: 5 }, (_, i) => client.invoke('stuck', `behind-${i}`));
    // While it spins, the daemon still answers health checks and other functions.
    const health = await fetch(`http://127.0.0.1:${daemon.port}/healthz`);
    expect(health.status).toBe(200);
    expect(text((await client.invoke('kit', 'meanwhile')).payload)).toBe('meanwhile');
    expect(await stuck).toMatchObject({ code: 'TIMEOUT', data: { timeoutMs: 1000, report: { function: 'stuck', billedMs: expect.any(Number) } } });
    expect((await Promise.all(behind)).map((r) => text(r.payload))).toEqual([0, 1, 2, 3, 4].map((i) => `behind-${i}`));
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    expect(text((await client.invoke('stuck', 'after')).payload)).toBe('after');
    await stillServes();
  });

  it('a guest that runs out of fuel → FUEL_EXHAUSTED, long before its deadline', async () => {
    const started = Date.now();
    const error = await client.invoke('frugal', 'loop').catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'FUEL_EXHAUSTED', data: { report: { fuelUsed: 5_000_000 } } });
    expect(Date.now() - started).toBeLessThan(10_000);
    const next = await client.invoke('frugal', 'fine');
    expect(text(next.payload)).toBe('fine');
    expect(next.report.fuelUsed).toBeGreaterThan(0);
    expect(next.report.fuelUsed).toBeLessThan(5_000_000);
    await stillServes();
  });

  it('a guest that crashes when memory runs out → MEMORY_LIMIT', async () => {
    await expect(client.invoke('kit', 'memory-trap')).rejects.toMatchObject({ code: 'MEMORY_LIMIT' });
    await stillServes();
  });

  it('a guest that writes 100 MiB to stdout: logs are cut, a command response is refused', async () => {
    const component = await client.invoke('kit', 'spam-stdout');
    expect(text(component.payload)).toBe('spammed');
    expect(component.report.logsTruncated).toBe(true);
    expect(component.report.stdout.length).toBeLessThanOrEqual(64 * 1024);
    await expect(client.invoke('cmd', 'spam-stdout')).rejects.toMatchObject({ code: 'PAYLOAD_TOO_LARGE' });
    await stillServes();
  });
});
