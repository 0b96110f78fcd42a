// A bare WebSocket that sends arbitrary frames and reads raw messages, for
// testing what the typed client would never send.
import WebSocket from 'ws';
import { decodeMessage, type Message } from '../../src/protocol/codec.js';

export interface RawSocket {
  send(frame: Uint8Array | string): void;
  next(): Promise<Message>;
  close(): void;
  closed: Promise<number>;
}

export async function openRaw(url: string, token?: string): Promise<RawSocket> {
  const socket = new WebSocket(`${url}/v1`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  const inbox: Message[] = [];
  const waiting: ((m: Message) => void)[] = [];
  socket.on('message', (data: Buffer) => {
    const message = decodeMessage(data);
    const waiter = waiting.shift();
    if (waiter) waiter(message);
    else inbox.push(message);
  });
  const closed = new Promise<number>((resolve) => socket.once('close', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('error', reject);
  });
  return {
    send: (frame) => socket.send(frame),
    next: () => {
      const ready = inbox.shift();
      if (ready) return Promise.resolve(ready);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no message within 10 s')), 10_000);
        waiting.push((m) => {
          clearTimeout(timer);
          resolve(m);
        });
      });
    },
    close: () => socket.close(),
    closed,
  };
}
