// The spine, end to end: a real daemon process, a real socket, real guests.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, KilnError } from '../../src/client/index.js';
import { guest, startDaemon, type RunningDaemon } from '../helpers/daemon.js';

const text = (bytes: Uint8Array) => Buffer.from(bytes).toString('utf8');

describe('deploy and invoke', () => {
  let daemon: RunningDaemon;

  beforeAll(async () => {
    daemon = await startDaemon();
  });
  afterAll(async () => {
    await daemon?.stop();
  });

  it('runs a C handler component with its env, logs and report', async () => {
    const client = await daemon.client();
    const info = await client.deploy('hello', guest('c/hello.wasm'), { env: { GREETING: 'Howdy' } });
    expect(info).toMatchObject({ name: 'hello', version: 1, kind: 'component' });
    expect(info.digest).toMatch(/^[0-9a-f]{64}$/);

    const upper = await client.invoke('hello', 'hello kiln', { contentType: 'text/plain' });
    expect(text(upper.payload)).toBe('HELLO KILN');
    expect(upper.contentType).toBe('text/plain');
    expect(upper.report).toMatchObject({ function: 'hello', version: 1, stderr: 'hello: handling 10 bytes\n' });
    expect(upper.report.durationMs).toBeGreaterThan(0);
    expect(upper.report.billedMs).toBeGreaterThanOrEqual(1);

    const greeting = await client.invoke('hello', 'greet:Ada');
    expect(greeting.contentType).toBe('application/json');
    expect(JSON.parse(text(greeting.payload))).toEqual({ greeting: 'Howdy, Ada!' });

    const failure = await client.invoke('hello', 'fail').catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(KilnError);
    expect(failure).toMatchObject({ code: 'GUEST_ERROR', message: 'asked to fail' });
    expect((failure as KilnError).data).toMatchObject({ guestCode: 'bad_input', report: { stderr: 'hello: handling 4 bytes\n' } });
    await client.close();
  });

  it('runs a C preview-1 command: stdin in, stdout out, exit status as error', async () => {
    const client = await daemon.client();
    expect(await client.deploy('shout', guest('command/echo-command.wasm'), { env: { WHO: 'kiln' } })).toMatchObject({ kind: 'command' });
    const result = await client.invoke('shout', 'quiet please');
    expect(text(result.payload)).toBe('QUIET PLEASE');
    expect(result.report).toMatchObject({ cold: true, stdout: '', stderr: 'command read 12 bytes\n' });
    expect(text((await client.invoke('shout', 'env:WHO')).payload)).toBe('kiln');
    expect(text((await client.invoke('shout', 'env:HOME')).payload)).toBe('(unset)');
    await expect(client.invoke('shout', 'fail')).rejects.toMatchObject({ code: 'GUEST_ERROR', data: { exitCode: 2 } });
    // Metering is exact: the same input costs the same fuel every time, and more input costs more.
    const fuel = async (input: string) => (await client.invoke('shout', input)).report.fuelUsed;
    const once = await fuel('the same input');
    expect(once).toBeGreaterThan(0);
    expect(await fuel('the same input')).toBe(once);
    expect(await fuel('the same input, only longer')).toBeGreaterThan(once);
    await client.close();
  });

  it('gives guests only their configured environment and no files', async () => {
    const client = await daemon.client();
    await client.deploy('kit', guest('component/testkit.wasm'), { env: { ONLY: 'this' } });
    expect(text((await client.invoke('kit', 'env:ONLY')).payload)).toBe('this');
    expect(text((await client.invoke('kit', 'env:PATH')).payload)).toBe('(unset)');
    expect(text((await client.invoke('kit', 'files')).payload)).toBe('denied');
    expect(text((await client.invoke('kit', 'context')).payload)).toBe('kit v1 fuel>0:1');
    await client.close();
  });

  it('lists, gets and deletes functions; redeploying makes a new version', async () => {
    const client = await daemon.client();
    await client.deploy('temp', guest('c/hello.wasm'));
    const second = await client.deploy('temp', guest('c/hello.wasm'), { memoryMb: 32 });
    expect(second).toMatchObject({ version: 2, config: { memoryMb: 32, timeoutMs: 30000, env: {}, instanceMode: 'reuse' } });
    expect((await client.list()).map((f) => f.name)).toContain('temp');
    const { live, ...current } = await client.get('temp');
    expect(current).toEqual(second);
    expect(live).toMatchObject({ instances: 0, invocations: 0 });
    expect(await client.delete('temp')).toEqual({ deleted: true });
    await expect(client.get('temp')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(client.invoke('temp', 'x')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(client.delete('temp')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect((await client.list()).map((f) => f.name)).not.toContain('temp');
    await client.close();
  });

  it('answers 100 concurrent invocations on one connection, each with its own result', async () => {
    const client = await daemon.client();
    await client.deploy('echo', guest('component/testkit.wasm'));
    const inputs = Array.from({ length: 100 }, (_, i) => `payload-${i}-${'x'.repeat(i * 37)}`);
    const results = await Promise.all(inputs.map((input) => client.invoke('echo', input)));
    expect(results.map((r) => text(r.payload))).toEqual(inputs);
    expect(new Set(results.map((r) => r.report.requestId)).size).toBe(100);
    await client.close();
  });

  it('refuses a connection without the right token', async () => {
    await expect(connect(daemon.url)).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
    await expect(connect(daemon.url, { token: 'kiln_wrong' })).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
    const health = await fetch(`http://127.0.0.1:${daemon.port}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok', protocol: 1 });
    const ready = await fetch(`http://127.0.0.1:${daemon.port}/readyz`);
    expect(await ready.json()).toEqual({ status: 'ready' });
  });
});

describe('dev mode', () => {
  it('accepts no token, but refuses browser pages from non-loopback origins', async () => {
    const daemon = await startDaemon({ dev: true });
    const client = await daemon.client();
    expect(await client.list()).toEqual([]);
    await client.close();
    const { default: WebSocket } = await import('ws');
    const refused = await new Promise<number>((resolve) => {
      const socket = new WebSocket(`${daemon.url}/v1`, { headers: { origin: 'https://evil.example' } });
      socket.on('unexpected-response', (_request, response) => resolve(response.statusCode ?? 0));
      socket.on('open', () => resolve(101));
    });
    expect(refused).toBe(403);
    const local = await new Promise<number>((resolve) => {
      const socket = new WebSocket(`${daemon.url}/v1`, { headers: { origin: `http://localhost:${daemon.port}` } });
      socket.on('unexpected-response', (_request, response) => resolve(response.statusCode ?? 0));
      socket.on('open', () => {
        socket.close();
        resolve(101);
      });
    });
    expect(local).toBe(101);
    await daemon.stop();
  });

  it('refuses to bind a non-loopback address', async () => {
    await expect(startDaemon({ dev: true, args: ['--host', '0.0.0.0'] })).rejects.toThrow(/loopback/);
  });
});

describe('durability', () => {
  it('keeps every acknowledged function across a graceful restart and a kill -9', async () => {
    let daemon = await startDaemon();
    const { dataDir, token } = daemon;
    let client = await daemon.client();
    await client.deploy('kept', guest('c/hello.wasm'), { env: { GREETING: 'Again' } });
    await client.deploy('also-kept', guest('command/echo-command.wasm'));
    await client.close();
    expect(await daemon.stop('SIGTERM')).toBe(0);

    daemon = await startDaemon({ dataDir });
    expect(daemon.token).toBe(token); // the admin token is created once
    client = await daemon.client();
    expect((await client.list()).map((f) => f.name)).toEqual(['also-kept', 'kept']);
    await client.deploy('after-restart', guest('c/hello.wasm'));
    await client.close();
    await daemon.stop('SIGKILL');

    daemon = await startDaemon({ dataDir });
    client = await daemon.client();
    expect((await client.list()).map((f) => f.name)).toEqual(['after-restart', 'also-kept', 'kept']);
    expect(text((await client.invoke('kept', 'greet:you')).payload)).toBe('{"greeting":"Again, you!"}');
    await client.close();
    await daemon.stop();
  });

  it('stops gracefully on SIGTERM while invocations are in flight', async () => {
    const daemon = await startDaemon({ dev: true });
    const client = await daemon.client();
    await client.deploy('echo', guest('component/testkit.wasm'));
    const inFlight = Array.from({ length: 20 }, (_, i) => client.invoke('echo', `n${i}`).then(
      (r) => text(r.payload),
      (e: KilnError) => e.code,
    ));
    const exit = daemon.stop('SIGTERM');
    const answers = await Promise.all(inFlight);
    // Every request is answered: with its result, or a clear code if it was cut off.
    for (const [i, answer] of answers.entries()) expect([`n${i}`, 'UNAVAILABLE', 'CONNECTION_CLOSED']).toContain(answer);
    expect(await exit).toBe(0);
  });
});
