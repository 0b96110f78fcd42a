// The MessagePack codec and the msgpack-rpc envelope: the only place frames
// are turned into messages and back.
import { Packr } from 'msgpackr';
import { InvalidMessageError, MalformedFrameError, type WireError } from './errors.js';

// Plain MessagePack only: msgpackr's record extension would make frames that
// other msgpack-rpc clients cannot read.
// int64AsType 'auto': clients that always write 64-bit integers (many do)
// get plain numbers while the value is a safe integer.
const packr = new Packr({
  useRecords: false,
  mapsAsObjects: true,
  encodeUndefinedAsNil: true,
  moreTypes: false,
  int64AsType: 'auto' as 'number', // supported at run time, missing from msgpackr's types
});

export const REQUEST = 0;
export const RESPONSE = 1;
export const NOTIFICATION = 2;

export interface RequestMessage {
  type: typeof REQUEST;
  id: number;
  method: string;
  params: unknown[];
}
export interface ResponseMessage {
  type: typeof RESPONSE;
  id: number;
  error: WireError | null;
  result: unknown;
}
export interface NotificationMessage {
  type: typeof NOTIFICATION;
  method: string;
  params: unknown[];
}
export type Message = RequestMessage | ResponseMessage | NotificationMessage;

/** A malformed request whose msgid could be read: answered with a response, not a kiln.error notification. */
export class InvalidRequestError extends InvalidMessageError {
  constructor(
    message: string,
    readonly msgid: number,
  ) {
    super(message);
  }
}

const isMsgId = (value: unknown): value is number =>
  typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= 0xffffffff;

export function encode(value: unknown): Uint8Array {
  return packr.pack(value);
}

/** Decodes one frame into a message; throws MALFORMED_FRAME or INVALID_MESSAGE (with the msgid when one was readable). */
export function decodeMessage(frame: Uint8Array): Message {
  let value: unknown;
  try {
    value = packr.unpack(frame);
  } catch (error) {
    throw new MalformedFrameError(`frame is not valid MessagePack: ${(error as Error).message}`);
  }
  if (!Array.isArray(value)) throw new InvalidMessageError('a message must be a MessagePack array');
  const [type, a, b, c] = value as unknown[];
  switch (type) {
    case REQUEST: {
      if (value.length !== 4) throw new InvalidMessageError('a request must be [0, msgid, method, params]');
      if (!isMsgId(a)) throw new InvalidMessageError('msgid must be an unsigned 32-bit integer');
      if (typeof b !== 'string') throw new InvalidRequestError('method must be a string', a);
      if (!Array.isArray(c)) throw new InvalidRequestError('params must be an array', a);
      return { type: REQUEST, id: a, method: b, params: c };
    }
    case RESPONSE: {
      if (value.length !== 4 || !isMsgId(a)) throw new InvalidMessageError('a response must be [1, msgid, error, result]');
      return { type: RESPONSE, id: a, error: (b ?? null) as WireError | null, result: c };
    }
    case NOTIFICATION: {
      if (value.length !== 3 || typeof a !== 'string' || !Array.isArray(b)) {
        throw new InvalidMessageError('a notification must be [2, method, params]');
      }
      return { type: NOTIFICATION, method: a, params: b };
    }
    default:
      throw new InvalidMessageError('message type must be 0 (request), 1 (response) or 2 (notification)');
  }
}

export const encodeRequest = (id: number, method: string, params: unknown[]): Uint8Array =>
  encode([REQUEST, id, method, params]);

export const encodeResponse = (id: number, error: WireError | null, result: unknown): Uint8Array =>
  encode([RESPONSE, id, error, error ? null : result]);

/**
 * An answer already encoded elsewhere (an executor encodes invocation results
 * where they are produced, so the network thread only frames them).
 */
export class EncodedAnswer {
  constructor(
    /** The MessagePack encoding of the result, or of the error map when isError. */
    readonly bytes: Uint8Array,
    readonly isError: boolean,
  ) {}
}

const NIL = Uint8Array.of(0xc0);

/** Bytes of a msgid (an unsigned 32-bit integer) as MessagePack's smallest uint form. */
const msgIdLength = (id: number): number => (id < 0x80 ? 1 : id < 0x100 ? 2 : id < 0x10000 ? 3 : 5);

/**
 * [1, id, error, result] around an already-encoded error or result, in one
 * allocation: this runs once per invocation on the network thread, so the
 * msgid is written in place rather than packed separately.
 */
export function encodeAnswer(id: number, answer: EncodedAnswer): Uint8Array {
  const error = answer.isError ? answer.bytes : NIL;
  const result = answer.isError ? NIL : answer.bytes;
  const idLength = msgIdLength(id);
  const frame = new Uint8Array(2 + idLength + error.length + result.length);
  frame[0] = 0x94; // fixarray of 4
  frame[1] = RESPONSE;
  if (idLength === 1) frame[2] = id;
  else if (idLength === 2) frame.set([0xcc, id], 2);
  else if (idLength === 3) frame.set([0xcd, id >>> 8, id & 0xff], 2);
  else frame.set([0xce, id >>> 24, (id >>> 16) & 0xff, (id >>> 8) & 0xff, id & 0xff], 2);
  frame.set(error, 2 + idLength);
  frame.set(result, 2 + idLength + error.length);
  return frame;
}

export const encodeNotification = (method: string, params: unknown[]): Uint8Array =>
  encode([NOTIFICATION, method, params]);
