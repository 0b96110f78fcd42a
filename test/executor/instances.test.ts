// One executor's instance cache, driven directly with a real prepared guest:
// what stays ready after an invocation in each mode, the provisioned floor,
// reaping, the memory budget's LRU order and forgetting a version.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { PreparedFunction, type GuestConfig, type Invocation } from '../../src/engine/index.js';
import { InstanceCache, type CachedFunction, type HeldChange } from '../../src/executor/instances.js';
import type { FunctionLoad } from '../../src/executor/messages.js';
import { ROOT } from '../helpers/daemon.js';

const testkit = readFileSync(join(ROOT, 'build', 'guests', 'component', 'testkit.wasm'));
const baseConfig: GuestConfig = { functionName: 'kit', functionVersion: 1, env: {}, memoryMb: 16, fuel: 1e9, instanceMode: 'reuse' };
const call = (body: string): Invocation => ({ payload: Buffer.from(body), contentType: 'text/plain', requestId: 'r', deadlineMs: Date.now() + 1000 });
const text = (bytes: Uint8Array | null) => Buffer.from(bytes ?? []).toString();

let prepared: Uint8Array;
beforeAll(() => {
  prepared = PreparedFunction.prepare(testkit, baseConfig).encode();
});

const load = (overrides: Partial<GuestConfig> = {}, idleTtlMs = 60_000): FunctionLoad => ({
  prepared,
  config: { ...baseConfig, ...overrides },
  idleTtlMs,
});

/** One invocation the way the worker runs it: take, invoke, give back, (answer), refill. */
function invoke(cache: InstanceCache, entry: CachedFunction, body: string) {
  const instance = cache.take(entry);
  const outcome = instance.invoke(call(body));
  cache.giveBack(entry, instance);
  cache.refill(entry);
  return outcome;
}

function cacheWith(budgetBytes = 2 ** 30) {
  const changes: HeldChange[] = [];
  const cache = new InstanceCache(budgetBytes, (change) => changes.push(change));
  const last = (key: string) => changes.filter((c) => c.key === key).at(-1);
  return { cache, changes, last };
}

describe('InstanceCache', () => {
  it('reuse mode keeps the instance that ran; fresh mode restores a new one after each invocation', () => {
    const { cache, last } = cacheWith();
    const reuse = cache.lookup('reuse', load())!;
    const fresh = cache.lookup('fresh', load({ instanceMode: 'fresh' }))!;
    const first = invoke(cache, reuse, 'count');
    expect(first.metering.cold).toBe(true);
    const second = invoke(cache, reuse, 'count');
    expect([text(first.payload), text(second.payload), second.metering.cold]).toEqual(['1', '2', false]);

    expect(invoke(cache, fresh, 'count').metering.cold).toBe(true);
    const again = invoke(cache, fresh, 'count');
    expect([text(again.payload), again.metering.cold]).toEqual(['1', false]);
    // Each function reported one ready instance once, and nothing more while steady.
    expect(last('reuse')!.held.ready).toBe(1);
    expect(last('fresh')!.held.ready).toBe(1);
  });

  it('replaces a faulted instance ahead of the next invocation', () => {
    const { cache } = cacheWith();
    const entry = cache.lookup('kit', load())!;
    invoke(cache, entry, 'count');
    expect(invoke(cache, entry, 'trap').error?.code).toBe('GUEST_TRAP');
    const next = invoke(cache, entry, 'count');
    expect([text(next.payload), next.metering.cold]).toEqual(['1', false]);
  });

  it('knows a function only by its load, and forgets it', () => {
    const { cache } = cacheWith();
    expect(cache.lookup('kit', undefined)).toBeUndefined();
    invoke(cache, cache.lookup('kit', load())!, 'count');
    expect(cache.lookup('kit', undefined)).toBeDefined();
    cache.forget('kit');
    expect(cache.lookup('kit', undefined)).toBeUndefined();
  });

  it('reaps instances idle past the TTL down to the provisioned floor', async () => {
    const { cache, last } = cacheWith();
    const idle = cache.lookup('idle', load({}, 100))!;
    const floor = cache.lookup('floor', load({}, 100))!;
    invoke(cache, idle, 'count');
    cache.provision(floor, 2);
    expect(last('floor')!.held.ready).toBe(2);
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(last('idle')).toMatchObject({ held: { ready: 0, bytes: 0 }, reaped: 1 });
    expect(last('floor')!.held.ready).toBe(2); // never reaped
    expect(invoke(cache, idle, 'count').metering.cold).toBe(true);
  });

  it('keeps ready instances within the budget, evicting the least recently used first', () => {
    // testkit restores into 3 pages (192 KiB): a budget of 1 MiB holds five.
    const { cache, last } = cacheWith(2 ** 20);
    const keys = Array.from({ length: 8 }, (_, i) => `f${i}`);
    for (const key of keys) invoke(cache, cache.lookup(key, load())!, 'count');
    const held = keys.map((key) => last(key)!.held);
    expect(held.reduce((sum, h) => sum + h.bytes, 0)).toBeLessThanOrEqual(2 ** 20);
    expect(last('f0')).toMatchObject({ held: { ready: 0 }, evicted: 1 });
    expect(last('f7')!.held.ready).toBe(1);
    // Using an old one makes it the most recent: the next eviction takes another.
    invoke(cache, cache.lookup('f5', undefined)!, 'count');
    invoke(cache, cache.lookup('f0', load())!, 'count');
    expect(last('f0')!.held.ready).toBe(1);
    expect(last('f5')!.held.ready).toBe(1);
  });
});
