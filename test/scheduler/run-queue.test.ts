import { describe, expect, it } from 'vitest';
import { RunQueue } from '../../src/scheduler/run-queue.js';

const item = (fn: string, n: number) => ({ fn, n });
type Item = ReturnType<typeof item>;
const queue = () => new RunQueue<Item>((i) => i.fn);
const takeAll = (q: RunQueue<Item>, accept: (i: Item) => boolean = () => true) => {
  const taken: string[] = [];
  for (let next = q.next((i) => (accept(i) ? true : undefined)); next; next = q.next((i) => (accept(i) ? true : undefined))) {
    taken.push(`${next[0].fn}${next[0].n}`);
  }
  return taken;
};

describe('RunQueue', () => {
  it('serves functions round robin, each in FIFO order', () => {
    const q = queue();
    for (let n = 1; n <= 4; n++) q.push(item('a', n));
    q.push(item('b', 1));
    q.push(item('c', 1));
    q.push(item('b', 2));
    expect(q.size).toBe(7);
    expect(takeAll(q)).toEqual(['a1', 'b1', 'c1', 'a2', 'b2', 'a3', 'a4']);
    expect(q.size).toBe(0);
  });

  it("skips a function whose head cannot go anywhere, without losing its turn's order", () => {
    const q = queue();
    q.push(item('heavy', 1));
    q.push(item('heavy', 2));
    q.push(item('light', 1));
    expect(takeAll(q, (i) => i.fn !== 'heavy')).toEqual(['light1']);
    expect(q.size).toBe(2);
    expect(takeAll(q)).toEqual(['heavy1', 'heavy2']);
  });

  it('puts requeued work back at the front, in its order, and drains everything', () => {
    const q = queue();
    q.push(item('a', 3));
    q.requeue([item('a', 1), item('a', 2)]);
    expect(q.next(() => true)?.[0]).toEqual(item('a', 1));
    q.push(item('b', 1));
    expect(q.drain().map((i) => `${i.fn}${i.n}`).sort()).toEqual(['a2', 'a3', 'b1']);
    expect(q.size).toBe(0);
    expect(q.next(() => true)).toBeUndefined();
  });
});
