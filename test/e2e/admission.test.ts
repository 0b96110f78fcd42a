// Reserved concurrency: a function at its limit queues what fits and refuses
// the rest at once with THROTTLED; nothing is lost or answered twice.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KilnError, type KilnClient } from '../../src/client/index.js';
import { guest, startDaemon, type RunningDaemon } from '../helpers/daemon.js';

describe('admission', () => {
  let daemon: RunningDaemon;
  let client: KilnClient;

  beforeAll(async () => {
    daemon = await startDaemon({ dev: true });
    client = await daemon.client();
  });
  afterAll(async () => {
    await client?.close();
    await daemon?.stop();
  });

  it('maxConcurrency 2 with a queue of 3: of 10 simultaneous long invocations 5 run, 5 are THROTTLED', async () => {
    // 'loop' spins until its fuel runs out: a long invocation that ends by itself.
    await client.deploy('busy', guest('component/testkit.wasm'), { maxConcurrency: 2, maxQueue: 3, fuel: 200_000_000 });
    const outcomes = await Promise.all(
      Array.from({ length: 10 }, () =>
        client.invoke('busy', 'loop').then(
          () => 'ok',
          (error: KilnError) => error,
        ),
      ),
    );
    const throttled = outcomes.filter((o) => o instanceof KilnError && o.code === 'THROTTLED') as KilnError[];
    const ran = outcomes.filter((o) => o instanceof KilnError && o.code === 'FUEL_EXHAUSTED');
    expect(throttled).toHaveLength(5);
    expect(ran).toHaveLength(5);
    for (const error of throttled) expect((error.data as { retryAfterMs: number }).retryAfterMs).toBeGreaterThanOrEqual(1);
    // The limit is per function: another function is not held back, and the busy one recovers.
    await client.deploy('other', guest('component/testkit.wasm'));
    expect(Buffer.from((await client.invoke('other', 'free')).payload).toString()).toBe('free');
    expect(Buffer.from((await client.invoke('busy', 'again')).payload).toString()).toBe('again');
  });

  it('refuses limits out of range', async () => {
    await expect(client.deploy('bad', guest('component/testkit.wasm'), { maxConcurrency: 0 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(client.deploy('bad', guest('component/testkit.wasm'), { maxQueue: -1 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});
