// The network thread: a uWebSockets.js app with the protocol's WebSocket
// endpoint and the HTTP health endpoints. It parses frames, routes them to
// the methods and writes answers; it never runs guest code.
import uWS from '@trufflesuite/uws-js-unofficial';
import { IDLE_CONNECTION_SECONDS, MAX_FRAME_BYTES } from '../limits.js';
import {
  decodeMessage,
  EncodedAnswer,
  encodeAnswer,
  encodeNotification,
  encodeResponse,
  InvalidRequestError,
  REQUEST,
} from '../protocol/codec.js';
import {
  InternalError,
  InvalidMessageError,
  KilnError,
  UnavailableError,
  UnsupportedFrameError,
  type WireError,
} from '../protocol/errors.js';
import { ENDPOINT_PATH, PROTOCOL_VERSION } from '../protocol/methods.js';
import type { Logger } from '../observability/logger.js';
import { presentedToken, tokenMatches } from './auth.js';
import type { Methods } from './methods.js';

function isLoopbackOrigin(origin: string): boolean {
  try {
    const { hostname } = new URL(origin);
    return hostname === 'localhost' || hostname === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(hostname);
  } catch {
    return false;
  }
}

const HEALTH_BODY = JSON.stringify({ status: 'ok', protocol: PROTOCOL_VERSION });

/** Sent when a frame cannot be answered as a response (no readable msgid). */
export const ERROR_NOTIFICATION = 'kiln.error';

interface Connection {
  open: boolean;
  /** Answers waiting for this loop turn's flush. */
  outbox: Uint8Array[];
}

export interface AppOptions {
  host: string;
  port: number;
  /** undefined in dev mode: no authentication. */
  token: string | undefined;
  methods: Methods;
  log: Logger;
  /** For /readyz. */
  isReady: () => boolean;
}

export class KilnServer {
  private readonly app: uWS.TemplatedApp;
  private listenSocket: uWS.us_listen_socket | undefined;
  private readonly sockets = new Set<uWS.WebSocket<Connection>>();
  /** Connections with answers waiting in their outbox. */
  private readonly pendingFlush = new Set<uWS.WebSocket<Connection>>();
  private flushScheduled = false;
  private inFlight = 0;
  private draining = false;
  private drained: (() => void) | undefined;
  port = 0;

  constructor(private readonly options: AppOptions) {
    this.app = uWS.App();
    this.app.get('/healthz', (res) => {
      res.writeHeader('content-type', 'application/json').end(HEALTH_BODY);
    });
    this.app.get('/readyz', (res) => {
      const ready = !this.draining && options.isReady();
      res
        .writeStatus(ready ? '200 OK' : '503 Service Unavailable')
        .writeHeader('content-type', 'application/json')
        .end(JSON.stringify({ status: ready ? 'ready' : 'not ready' }));
    });
    this.app.ws<Connection>(ENDPOINT_PATH, {
      maxPayloadLength: MAX_FRAME_BYTES,
      maxBackpressure: 2 * MAX_FRAME_BYTES,
      // A client that reads slower than its answers arrive is disconnected rather than losing answers silently.
      closeOnBackpressureLimit: 1,
      idleTimeout: IDLE_CONNECTION_SECONDS,
      sendPingsAutomatically: true,
      compression: uWS.DISABLED,
      upgrade: (res, req, context) => this.upgrade(res, req, context),
      open: (ws) => {
        this.sockets.add(ws);
      },
      message: (ws, message, isBinary) => this.onFrame(ws, message, isBinary),
      close: (ws) => {
        ws.getUserData().open = false;
        this.sockets.delete(ws);
        this.pendingFlush.delete(ws);
      },
    });
    this.app.any('/*', (res) => {
      res.writeStatus('404 Not Found').writeHeader('content-type', 'application/json').end('{"code":"NOT_FOUND"}');
    });
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.app.listen(this.options.host, this.options.port, (socket) => {
        if (!socket) return reject(new Error(`cannot listen on ${this.options.host}:${this.options.port}`));
        this.listenSocket = socket;
        this.port = uWS.us_socket_local_port(socket);
        resolve(this.port);
      });
    });
  }

  /** Stops accepting, waits up to graceMs for in-flight requests, then closes every connection. */
  async close(graceMs: number): Promise<void> {
    this.draining = true;
    if (this.listenSocket) uWS.us_listen_socket_close(this.listenSocket);
    this.listenSocket = undefined;
    if (this.inFlight > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, graceMs);
        this.drained = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /** Closes every connection (after close() and the executors' shutdown). */
  disconnectAll(): void {
    for (const ws of this.sockets) ws.end(1001, 'server shutting down');
    this.sockets.clear();
  }

  private upgrade(res: uWS.HttpResponse, req: uWS.HttpRequest, context: uWS.us_socket_context_t): void {
    // Everything from req must be read before this function returns.
    const key = req.getHeader('sec-websocket-key');
    const protocol = req.getHeader('sec-websocket-protocol');
    const extensions = req.getHeader('sec-websocket-extensions');
    const presented = presentedToken(req.getHeader('authorization'), req.getQuery() ?? '');
    const origin = req.getHeader('origin');
    // Browsers send any page's WebSocket to loopback: with auth off (dev mode),
    // only pages served from loopback itself may connect.
    if (this.options.token === undefined && origin !== '' && !isLoopbackOrigin(origin)) {
      res.writeStatus('403 Forbidden').writeHeader('content-type', 'application/json')
        .end(JSON.stringify({ code: 'UNAUTHENTICATED', message: `dev mode accepts browser connections only from loopback origins, not ${origin}` }));
      return;
    }
    if (this.options.token !== undefined && !tokenMatches(this.options.token, presented)) {
      this.options.log.warn({ remote: Buffer.from(res.getRemoteAddressAsText()).toString() }, 'rejected upgrade: bad token');
      res
        .writeStatus('401 Unauthorized')
        .writeHeader('content-type', 'application/json')
        .writeHeader('www-authenticate', 'Bearer')
        .end(JSON.stringify({ code: 'UNAUTHENTICATED', message: 'a valid token is required (Authorization: Bearer …)' }));
      return;
    }
    if (this.draining) {
      res.writeStatus('503 Service Unavailable').end(JSON.stringify({ code: 'UNAVAILABLE', message: 'shutting down' }));
      return;
    }
    res.upgrade<Connection>({ open: true, outbox: [] }, key, protocol, extensions, context);
  }

  // Answers mostly arrive from executors one message at a time, outside
  // uWS's corked callbacks; they are gathered and written once per loop turn,
  // corked, so a burst of answers costs one write instead of one each.
  // A closed uWS socket throws on any access, so the open flag is read from
  // the connection object captured while the socket was known to be open.
  private send(ws: uWS.WebSocket<Connection>, connection: Connection, frame: Uint8Array): void {
    if (!connection.open) return;
    connection.outbox.push(frame);
    this.pendingFlush.add(ws);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    for (const ws of this.pendingFlush) {
      const connection = ws.getUserData();
      const frames = connection.outbox;
      connection.outbox = [];
      if (connection.open) ws.cork(() => frames.forEach((frame) => ws.send(frame, true)));
    }
    this.pendingFlush.clear();
  }

  private onFrame(ws: uWS.WebSocket<Connection>, message: ArrayBuffer, isBinary: boolean): void {
    const connection = ws.getUserData();
    if (!isBinary) {
      const error = new UnsupportedFrameError('text frames are not accepted: send MessagePack in binary frames');
      this.send(ws, connection, encodeNotification(ERROR_NOTIFICATION, [error.toWire()]));
      return;
    }
    // uWS reuses the frame's memory after this callback returns: copy it.
    const frame = new Uint8Array(message.slice(0));
    let id: number;
    let method: string;
    let params: unknown[];
    try {
      const decoded = decodeMessage(frame);
      if (decoded.type !== REQUEST) throw new InvalidMessageError('clients may send only requests (type 0)');
      ({ id, method, params } = decoded);
    } catch (error) {
      const wire = this.toWire(error);
      if (error instanceof InvalidRequestError) this.send(ws, connection, encodeResponse(error.msgid, wire, null));
      else this.send(ws, connection, encodeNotification(ERROR_NOTIFICATION, [wire]));
      return;
    }
    if (this.draining) {
      this.send(ws, connection, encodeResponse(id, new UnavailableError('the daemon is shutting down').toWire(), null));
      return;
    }
    this.inFlight++;
    let result: unknown;
    try {
      result = this.options.methods.call(method, params);
    } catch (error) {
      return this.answer(ws, connection, id, this.toWire(error), null);
    }
    if (result instanceof Promise) {
      result.then(
        (value) => this.answer(ws, connection, id, null, value),
        (error) => this.answer(ws, connection, id, this.toWire(error), null),
      );
    } else {
      this.answer(ws, connection, id, null, result);
    }
  }

  private toWire(error: unknown): WireError {
    if (error instanceof KilnError) return error.toWire();
    this.options.log.error({ err: error }, 'internal error');
    return new InternalError(`internal error: ${error instanceof Error ? error.message : String(error)}`).toWire();
  }

  private answer(ws: uWS.WebSocket<Connection>, connection: Connection, id: number, error: WireError | null, result: unknown): void {
    this.inFlight--;
    this.send(ws, connection, result instanceof EncodedAnswer ? encodeAnswer(id, result) : encodeResponse(id, error, result));
    if (this.draining && this.inFlight === 0) this.drained?.();
  }
}


