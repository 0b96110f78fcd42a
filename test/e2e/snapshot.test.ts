// Snapshots through the daemon: a component's initialisation runs once when
// it is prepared, never on a cold start, and a restored instance never sees
// a previous instance's state.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KilnClient } from '../../src/client/index.js';
import { guest, startDaemon, type RunningDaemon } from '../helpers/daemon.js';

const text = (bytes: Uint8Array) => Buffer.from(bytes).toString('utf8');

describe('snapshots', () => {
  let daemon: RunningDaemon;
  let client: KilnClient;

  beforeAll(async () => {
    // One executor, so every invocation lands on the same prepared function.
    daemon = await startDaemon({ dev: true, args: ['--workers', '1'] });
    client = await daemon.client();
  });
  afterAll(async () => {
    await client?.close();
    await daemon?.stop();
  });

  it('runs an expensive constructor once per prepare and restores its result on every cold start', async () => {
    await client.deploy('slow', guest('component/slowinit.wasm'));
    const first = await client.invoke('slow', 'x');
    expect(text(first.payload)).toMatch(/^init_runs=1 calls=1 checksum=[0-9a-f]{8}$/);
    expect(first.report.cold).toBe(true);
    // Init's output went to the prepare, not to the first invocation: init did not run on the call path.
    expect(first.report.stderr).toBe('');
    const checksum = text(first.payload).split('checksum=')[1];

    const warm = await client.invoke('slow', 'x');
    expect(text(warm.payload)).toBe(`init_runs=1 calls=2 checksum=${checksum}`);
    expect(warm.report.cold).toBe(false);

    // A fault discards the instance; the next one is restored from the snapshot
    // (ahead of the next invocation, so that one starts warm): init does not
    // run again, and the dead instance's call count is gone.
    await expect(client.invoke('slow', 'trap')).rejects.toMatchObject({ code: 'GUEST_TRAP' });
    const restored = await client.invoke('slow', 'x');
    expect(text(restored.payload)).toBe(`init_runs=1 calls=1 checksum=${checksum}`);
    expect(restored.report.cold).toBe(false);
    expect(restored.report.stderr).toBe('');
    // The same work costs the same fuel on every fresh instance.
    expect(restored.report.fuelUsed).toBe(first.report.fuelUsed);
  });

  it('prepares once per artifact and config: a redeploy reuses the prepared form, a new config does not', async () => {
    // slowinit's init draws a random nonce, so every real prepare makes a different prepared form.
    const first = await client.deploy('again', guest('component/slowinit.wasm'));
    const same = await client.deploy('again', guest('component/slowinit.wasm'));
    expect(same.version).toBe(2);
    expect(same.preparedDigest).toBe(first.preparedDigest);
    const changed = await client.deploy('again', guest('component/slowinit.wasm'), { env: { MODE: 'other' } });
    expect(changed.preparedDigest).not.toBe(first.preparedDigest);
    expect(text((await client.invoke('again', 'x')).payload)).toMatch(/^init_runs=1 calls=1/);
  });

  it('fresh mode gives every invocation a new instance; reuse mode keeps one warm', async () => {
    await client.deploy('fresh', guest('component/testkit.wasm'), { instanceMode: 'fresh' });
    await client.deploy('reused', guest('component/testkit.wasm'));
    const counts = async (fn: string) => {
      const seen: string[] = [];
      for (let i = 0; i < 3; i++) seen.push(text((await client.invoke(fn, 'count')).payload));
      return seen;
    };
    expect(await counts('fresh')).toEqual(['1', '1', '1']);
    expect(await counts('reused')).toEqual(['1', '2', '3']);
    expect((await client.get('fresh')).config.instanceMode).toBe('fresh');
    await expect(client.deploy('bad-mode', guest('component/testkit.wasm'), { instanceMode: 'sometimes' as 'fresh' })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
  });

  it('a component whose initialisation runs out of fuel is refused at deploy', async () => {
    await expect(client.deploy('starved', guest('component/slowinit.wasm'), { fuel: 1_000_000 })).rejects.toMatchObject({
      code: 'FUEL_EXHAUSTED',
      message: expect.stringContaining('initialisation'),
    });
    await expect(client.get('starved')).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });
});
