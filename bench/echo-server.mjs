#!/usr/bin/env node
// The transport's ceiling: a bare uWebSockets.js server that does the same
// per-frame work as Kiln's network thread (copy the frame, msgpackr-decode a
// msgpack-rpc request, msgpackr-encode a response) but runs no guest: an
// invoke-shaped request [0, id, method, [{payload, ...}]] is answered with
// [1, id, null, {payload, contentType: 'application/octet-stream'}].
//
//   node bench/echo-server.mjs [PORT]     (0 or nothing: any free port)
//
// Prints "echo listening on ws://127.0.0.1:PORT" to stderr when ready and
// stops on SIGTERM/SIGINT. Loopback only. Run it as its own process so it
// does not share an event loop with the load generator.
import uWS from '@trufflesuite/uws-js-unofficial';
import { Packr } from 'msgpackr';

const HOST = '127.0.0.1';
const port = Number(process.argv[2] ?? 0);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  process.stderr.write(`usage: node bench/echo-server.mjs [PORT]\n`);
  process.exit(2);
}

// The same codec options as src/protocol/codec.ts.
const packr = new Packr({ useRecords: false, mapsAsObjects: true, encodeUndefinedAsNil: true, moreTypes: false });
const CONTENT_TYPE = 'application/octet-stream';

function answer(frame) {
  let message;
  try {
    message = packr.unpack(frame);
  } catch (error) {
    return packr.pack([2, 'kiln.error', [{ code: 'MALFORMED_FRAME', message: String(error) }]]);
  }
  if (!Array.isArray(message) || message.length !== 4 || message[0] !== 0 || !Array.isArray(message[3])) {
    return packr.pack([2, 'kiln.error', [{ code: 'INVALID_MESSAGE', message: 'expected [0, msgid, method, params]' }]]);
  }
  const [, id, , params] = message;
  const first = params[0];
  const payload = first && first.payload instanceof Uint8Array ? first.payload : new Uint8Array(0);
  return packr.pack([1, id, null, { payload, contentType: CONTENT_TYPE }]);
}

const app = uWS.App();
app.get('/healthz', (res) => {
  res.writeHeader('content-type', 'application/json').end('{"status":"ok"}');
});
app.ws('/*', {
  maxPayloadLength: 16 * 1024 * 1024,
  maxBackpressure: 32 * 1024 * 1024,
  idleTimeout: 120,
  compression: uWS.DISABLED,
  message: (ws, message, isBinary) => {
    if (!isBinary) return;
    // Kiln copies the frame before decoding (uWS reuses its memory): so do we.
    ws.send(answer(new Uint8Array(message.slice(0))), true);
  },
});

let listenSocket;
app.listen(HOST, port, (socket) => {
  if (!socket) {
    process.stderr.write(`echo: cannot listen on ${HOST}:${port}\n`);
    process.exit(1);
  }
  listenSocket = socket;
  process.stderr.write(`echo listening on ws://${HOST}:${uWS.us_socket_local_port(socket)}\n`);
});

const stop = () => {
  if (listenSocket) uWS.us_listen_socket_close(listenSocket);
  listenSocket = undefined;
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
