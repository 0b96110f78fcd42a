// Instances ahead of demand and back to zero: idle instances are reaped after
// the function's TTL, provisioned ones are kept (and restored again when an
// executor is replaced), a redeploy drops the old version's instances, and
// the memory budget evicts the least recently used. All of it is read back
// through functions.get's live view, as `kiln info` shows it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FunctionLive, KilnClient } from '../../src/client/index.js';
import { guest, startDaemon, type RunningDaemon } from '../helpers/daemon.js';

const text = (bytes: Uint8Array) => Buffer.from(bytes).toString();
const testkit = guest('component/testkit.wasm');

/** Polls the function's live view until `done` holds (the executors report changes as they happen, asynchronously). */
async function waitForLive(client: KilnClient, name: string, done: (live: FunctionLive) => boolean, ms = 10_000): Promise<FunctionLive> {
  const until = Date.now() + ms;
  for (;;) {
    const { live } = await client.get(name);
    if (done(live)) return live;
    if (Date.now() > until) throw new Error(`${name}: live view never matched; last ${JSON.stringify(live)}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

describe('scaling: two executors', () => {
  let daemon: RunningDaemon;
  let client: KilnClient;

  beforeAll(async () => {
    daemon = await startDaemon({ dev: true, args: ['--workers', '2'] });
    client = await daemon.client();
  });
  afterAll(async () => {
    await client?.close();
    await daemon?.stop();
  });

  it('reaps an idle instance after its TTL (scale to zero); the next invocation is a counted cold start', async () => {
    await client.deploy('ttl', testkit, { idleTtlMs: 200 });
    expect((await client.get('ttl')).live).toMatchObject({ instances: 0, invocations: 0 });
    const first = await client.invoke('ttl', 'count');
    expect(first.report.cold).toBe(true);
    expect(text((await client.invoke('ttl', 'count')).payload)).toBe('2');

    const idle = await waitForLive(client, 'ttl', (live) => live.instances === 0);
    expect(idle).toMatchObject({ instances: 0, instanceBytes: 0, reaped: 1, invocations: 2, coldStarts: 1 });

    const after = await client.invoke('ttl', 'count');
    expect(text(after.payload)).toBe('1'); // a new instance, restored from the snapshot
    expect(after.report.cold).toBe(true);
    expect(after.report.initUs).toBeGreaterThan(0);
    expect((await client.get('ttl')).live).toMatchObject({ invocations: 3, coldStarts: 2 });
  });

  it('keeps provisioned instances restored from deploy on, past the idle TTL', async () => {
    const info = await client.deploy('prov', testkit, { provisioned: 3, idleTtlMs: 100, instanceMode: 'fresh' });
    expect(info.config).toMatchObject({ provisioned: 3, idleTtlMs: 100 });
    // deploy returns once they are restored, spread over both executors.
    expect((await client.get('prov')).live).toMatchObject({ instances: 3, executors: 2 });

    const results = await Promise.all(Array.from({ length: 6 }, () => client.invoke('prov', 'count')));
    for (const result of results) {
      expect(text(result.payload)).toBe('1'); // fresh mode: every invocation its own instance
      expect(result.report.cold).toBe(false); // ...restored ahead of it
    }
    // Well past the TTL, the provisioned floor is still there, and nothing was reaped below it.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect((await client.get('prov')).live).toMatchObject({ instances: 3, reaped: 0, coldStarts: 0, invocations: 6 });
  });

  it('restores provisioned instances on the executor that replaces one stopped at a deadline', async () => {
    await client.deploy('prov-timeout', testkit, { provisioned: 2, timeoutMs: 300, fuel: 1e12 });
    expect((await client.get('prov-timeout')).live.instances).toBe(2);
    await expect(client.invoke('prov-timeout', 'loop')).rejects.toMatchObject({ code: 'TIMEOUT' });
    const live = await waitForLive(client, 'prov-timeout', (l) => l.instances === 2 && l.executors === 2);
    expect(live).toMatchObject({ timeouts: 1, errors: 1 });
    const next = await client.invoke('prov-timeout', 'count');
    expect(next.report.cold).toBe(false);
  });

  it('a redeploy starts the new version with no instances; the old version is gone from the executors', async () => {
    await client.deploy('redeploy', testkit);
    await client.invoke('redeploy', 'count');
    await client.invoke('redeploy', 'count');
    const before = await waitForLive(client, 'redeploy', (live) => live.instances === 1);
    expect(before).toMatchObject({ instances: 1, executors: 1, invocations: 2 });
    await client.deploy('redeploy', testkit, { env: { V: '2' } });
    expect((await client.get('redeploy')).live).toMatchObject({ instances: 0, executors: 0, invocations: 0 });
    const fresh = await client.invoke('redeploy', 'count');
    expect(text(fresh.payload)).toBe('1');
    expect(fresh.report).toMatchObject({ cold: true, version: 2 });
  });

  it('refuses provisioned and idle TTL values out of range', async () => {
    await expect(client.deploy('bad', testkit, { provisioned: 101 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(client.deploy('bad', testkit, { provisioned: -1 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(client.deploy('bad', testkit, { idleTtlMs: 5 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});

describe('scaling: a memory budget', () => {
  let daemon: RunningDaemon;
  let client: KilnClient;

  beforeAll(async () => {
    // One executor and 1 MiB: room for about five of testkit's 0.19 MiB instances.
    daemon = await startDaemon({ dev: true, args: ['--workers', '1', '--memory-budget', '1'] });
    client = await daemon.client();
  });
  afterAll(async () => {
    await client?.close();
    await daemon?.stop();
  });

  it('evicts the least recently used idle instances to stay within it, never a provisioned one', async () => {
    await client.deploy('pinned', testkit, { provisioned: 1 });
    const names = Array.from({ length: 8 }, (_, i) => `lru-${i}`);
    for (const name of names) {
      await client.deploy(name, testkit);
      await client.invoke(name, 'count');
    }
    // Executors report what they hold right after answering: wait for the last report.
    await waitForLive(client, names.at(-1)!, (live) => live.instances === 1);
    const lives = await Promise.all(names.map(async (name) => (await client.get(name)).live));
    const held = lives.reduce((sum, live) => sum + live.instanceBytes, 0) + (await client.get('pinned')).live.instanceBytes;
    expect(held).toBeLessThanOrEqual(2 ** 20);
    // The oldest went, the newest stayed.
    expect(lives[0]).toMatchObject({ instances: 0, evicted: 1 });
    expect(lives.at(-1)).toMatchObject({ instances: 1, evicted: 0 });
    expect((await client.get('pinned')).live).toMatchObject({ instances: 1, evicted: 0 });
    // An evicted function still runs: a cold start.
    const again = await client.invoke(names[0]!, 'count');
    expect(again.report.cold).toBe(true);
  });
});
