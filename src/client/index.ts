// The TypeScript client: a typed wrapper over the protocol (docs/protocol.md).
// It speaks only MessagePack-RPC over WebSocket; nothing here knows the server.
import { EventEmitter } from 'node:events';
import WebSocket from 'ws';
import { CLIENT_REQUEST_TIMEOUT_MS } from '../limits.js';
import { decodeMessage, encodeRequest, NOTIFICATION, RESPONSE } from '../protocol/codec.js';
import {
  ConnectionClosedError,
  errorFromWire,
  KilnError,
  TimeoutError,
  UnauthenticatedError,
  UnavailableError,
} from '../protocol/errors.js';
import {
  ENDPOINT_PATH,
  type FunctionConfigInput,
  type FunctionInfo,
  type FunctionLive,
  type InvokeResult,
} from '../protocol/methods.js';

export * from '../protocol/errors.js';
export type { FunctionConfigInput, FunctionInfo, FunctionLive, InvocationReport, InvokeResult } from '../protocol/methods.js';

export interface ConnectOptions {
  /** The admin token (omit for a dev-mode daemon). */
  token?: string;
  /** How long each request may wait for its answer. */
  timeoutMs?: number;
}

export interface InvokeOptions {
  contentType?: string;
  timeoutMs?: number;
}

interface PendingRequest {
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

/** Adds the protocol endpoint's path to a base URL such as ws://127.0.0.1:7070. */
export function endpointUrl(url: string): string {
  const parsed = new URL(url);
  if (parsed.pathname === '' || parsed.pathname === '/') parsed.pathname = ENDPOINT_PATH;
  return parsed.toString();
}

export class KilnClient extends EventEmitter {
  private readonly pending = new Map<number, PendingRequest>();
  private nextId = 1;
  private closedError: KilnError | undefined;

  private constructor(
    private readonly socket: WebSocket,
    private readonly timeoutMs: number,
  ) {
    super();
    socket.on('message', (data: Buffer, isBinary: boolean) => this.onFrame(data, isBinary));
    socket.on('close', (code, reason) => this.failAll(new ConnectionClosedError(`connection closed (${code}${reason.length ? `: ${reason}` : ''})`)));
    socket.on('error', (error) => this.failAll(new ConnectionClosedError(`connection failed: ${error.message}`)));
  }

  static connect(url: string, options: ConnectOptions = {}): Promise<KilnClient> {
    const headers: Record<string, string> = options.token ? { authorization: `Bearer ${options.token}` } : {};
    const socket = new WebSocket(endpointUrl(url), { headers, maxPayload: 0, perMessageDeflate: false });
    return new Promise((resolve, reject) => {
      socket.once('open', () => resolve(new KilnClient(socket, options.timeoutMs ?? CLIENT_REQUEST_TIMEOUT_MS)));
      socket.once('unexpected-response', (_request, response) => {
        socket.terminate();
        reject(
          response.statusCode === 401
            ? new UnauthenticatedError('the daemon refused the token (set KILN_TOKEN or pass --token)')
            : new UnavailableError(`the daemon answered the upgrade with HTTP ${response.statusCode}`),
        );
      });
      socket.once('error', (error) => reject(new UnavailableError(`cannot connect to ${url}: ${error.message}`)));
    });
  }

  /** Sends any method; resolves with its result or rejects with a KilnError. */
  request<T = unknown>(method: string, params: unknown[], timeoutMs = this.timeoutMs): Promise<T> {
    if (this.closedError) return Promise.reject(this.closedError);
    const id = this.nextId;
    this.nextId = (this.nextId + 1) >>> 0 || 1;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new TimeoutError(`no answer to ${method} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve: resolve as (value: unknown) => void, reject, timer });
      this.socket.send(encodeRequest(id, method, params));
    });
  }

  deploy(name: string, wasm: Uint8Array, config: FunctionConfigInput = {}): Promise<FunctionInfo> {
    return this.request('functions.deploy', [{ name, wasm, config }]);
  }

  invoke(name: string, payload: Uint8Array | string = new Uint8Array(0), options: InvokeOptions = {}): Promise<InvokeResult> {
    const bytes = typeof payload === 'string' ? Buffer.from(payload) : payload;
    const params: Record<string, unknown> = { function: name, payload: bytes };
    if (options.contentType) params.contentType = options.contentType;
    return this.request('invoke', [params], options.timeoutMs);
  }

  /** The function's current version, with what the daemon holds for it now (`live`). */
  get(name: string): Promise<FunctionInfo & { live: FunctionLive }> {
    return this.request('functions.get', [{ name }]);
  }

  list(): Promise<FunctionInfo[]> {
    return this.request('functions.list', []);
  }

  delete(name: string): Promise<{ deleted: true }> {
    return this.request('functions.delete', [{ name }]);
  }

  close(): Promise<void> {
    if (this.socket.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      this.socket.once('close', () => resolve());
      this.socket.close(1000);
    });
  }

  private onFrame(data: Buffer, isBinary: boolean): void {
    if (!isBinary) return;
    let message;
    try {
      message = decodeMessage(data);
    } catch (error) {
      this.emit('protocol-error', error);
      return;
    }
    if (message.type === RESPONSE) {
      const pending = this.pending.get(message.id);
      if (!pending) return;
      this.pending.delete(message.id);
      clearTimeout(pending.timer);
      if (message.error) pending.reject(errorFromWire(message.error));
      else pending.resolve(message.result);
    } else if (message.type === NOTIFICATION) {
      this.emit('notification', message.method, message.params);
    }
  }

  private failAll(error: KilnError): void {
    this.closedError ??= error;
    for (const [id, pending] of this.pending) {
      clearTimeout(pending.timer);
      pending.reject(error);
      this.pending.delete(id);
    }
  }
}

export const connect = KilnClient.connect;
