// The executor pool on its own, with real worker threads (from the build in
// dist/, which `npm test` makes first) and a real guest: a retired version
// does not linger on the executors, and a deadline never stops an executor
// whose running task has already answered.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { GuestConfig, Invocation } from '../../src/engine/index.js';
import type { ExecutorPool as Pool, FunctionRef } from '../../src/executor/pool.js';
import { ROOT } from '../helpers/daemon.js';

const { ExecutorPool } = (await import(join(ROOT, 'dist', 'executor', 'pool.js'))) as { ExecutorPool: typeof Pool };
const testkit = readFileSync(join(ROOT, 'build', 'guests', 'component', 'testkit.wasm'));
const config: GuestConfig = { functionName: 'kit', functionVersion: 1, env: {}, memoryMb: 16, fuel: 1e10, instanceMode: 'reuse' };
const call = (body: string): Invocation => ({ payload: Buffer.from(body), contentType: 'text/plain', requestId: 'r', deadlineMs: Date.now() + 10_000 });
/** What the pool keeps about a key on the network thread (private state, read for the test). */
const traces = (pool: Pool, key: string) => {
  const internals = pool as unknown as { slots: Array<{ keys: Set<string> }>; runTimes: Map<string, number> };
  return { onExecutors: internals.slots.filter((slot) => slot.keys.has(key)).length, runTime: internals.runTimes.has(key) };
};

let pool: Pool | undefined;
afterEach(async () => {
  await pool?.close();
  pool = undefined;
});

describe('ExecutorPool', () => {
  it('runs invocations of a retired version that were already queued, then keeps nothing of it', async () => {
    pool = new ExecutorPool({ size: 3, memoryBudgetBytes: 2 ** 30 });
    const { prepared } = await pool.prepare(testkit, config);
    const v1: FunctionRef = { key: 'kit@1', config, timeoutMs: 10_000, idleTtlMs: 600_000, loadPrepared: () => prepared };
    // Slow enough that most of these wait in the pool's queue.
    await pool.invoke(v1, call('spin:20'));
    await pool.invoke(v1, call('spin:20'));
    const queued = Array.from({ length: 12 }, () => pool!.invoke(v1, call('spin:20')));
    v1.retired = true;
    pool.forget(v1.key);
    const results = await Promise.allSettled(queued);
    expect(results.every((r) => r.status === 'fulfilled')).toBe(true);
    expect(traces(pool, v1.key)).toEqual({ onExecutors: 0, runTime: false });
    expect(pool.stats(v1.key)).toMatchObject({ instances: 0, executors: 0 });
  });

  it('a provision waiting behind a task stopped at its deadline resolves once the replacement executor has restored it', async () => {
    pool = new ExecutorPool({ size: 1, memoryBudgetBytes: 2 ** 30 });
    const { prepared } = await pool.prepare(testkit, config);
    const stuck: FunctionRef = { key: 'stuck@1', config, timeoutMs: 300, idleTtlMs: 600_000, loadPrepared: () => prepared };
    const provisioned: FunctionRef = { ...stuck, key: 'provisioned@1', timeoutMs: 10_000 };
    const looping = pool.invoke(stuck, call('loop')).catch((error: unknown) => error);
    await new Promise((resolve) => setTimeout(resolve, 20));
    await pool.provision(provisioned, 1);
    expect(pool.stats(provisioned.key).instances).toBe(1);
    expect(await looping).toMatchObject({ code: 'TIMEOUT' });
  });

  it('delivers an answer that arrived while the network thread was too busy to see it before the deadline', async () => {
    pool = new ExecutorPool({ size: 1, memoryBudgetBytes: 2 ** 30 });
    const { prepared } = await pool.prepare(testkit, config);
    const fn: FunctionRef = { key: 'kit@1', config, timeoutMs: 300, idleTtlMs: 600_000, loadPrepared: () => prepared };
    await pool.invoke(fn, call('count'));
    const worker = (pool as unknown as { slots: Array<{ worker: unknown }> }).slots[0]!.worker;
    // A broken prepared form: its error comes back by message, not through the ring.
    const broken: FunctionRef = { ...fn, key: 'broken@1', loadPrepared: () => new Uint8Array(64) };
    const failing = pool.invoke(broken, call('x'));
    const next = pool.invoke(fn, call('count'));
    // The network thread stalls past the deadline before it handles any reply.
    setImmediate(() => {
      const until = performance.now() + 600;
      while (performance.now() < until);
    });
    const [first, second] = await Promise.allSettled([failing, next]);
    expect(first.status === 'rejected' && (first.reason as { code: string }).code).not.toBe('TIMEOUT');
    expect(second.status).toBe('fulfilled');
    expect((pool as unknown as { slots: Array<{ worker: unknown }> }).slots[0]!.worker).toBe(worker); // not replaced
  });
});
