import { describe, expect, it } from 'vitest';
import { decodeMessage, encode, EncodedAnswer, encodeAnswer, encodeNotification, encodeRequest, encodeResponse } from '../../src/protocol/codec.js';
import { ERROR_CODES, errorFromWire, GuestError, KilnError } from '../../src/protocol/errors.js';
import { parseInvokeParams } from '../../src/protocol/methods.js';

describe('codec', () => {
  it('round-trips the three message forms as plain msgpack-rpc arrays', () => {
    const payload = new Uint8Array([1, 2, 3]);
    expect(decodeMessage(encodeRequest(7, 'invoke', [{ function: 'f', payload }]))).toEqual({
      type: 0,
      id: 7,
      method: 'invoke',
      params: [{ function: 'f', payload: Buffer.from(payload) }],
    });
    expect(decodeMessage(encodeResponse(8, null, { ok: 1 }))).toEqual({ type: 1, id: 8, error: null, result: { ok: 1 } });
    expect(decodeMessage(encodeResponse(9, { code: 'NOT_FOUND', message: 'm' }, 'ignored'))).toEqual({
      type: 1,
      id: 9,
      error: { code: 'NOT_FOUND', message: 'm' },
      result: null,
    });
    expect(decodeMessage(encodeNotification('kiln.error', [1]))).toEqual({ type: 2, method: 'kiln.error', params: [1] });
    // No msgpackr record extension (0xd4/0xc7…): the first byte is a fixarray of 4.
    expect(encodeRequest(1, 'm', [])[0]).toBe(0x94);
  });

  it('frames answers encoded elsewhere into the same responses', () => {
    expect(decodeMessage(encodeAnswer(70000, new EncodedAnswer(encode({ a: 1 }), false)))).toEqual(
      decodeMessage(encodeResponse(70000, null, { a: 1 })),
    );
    const error = { code: 'GUEST_ERROR', message: 'no', data: { guestCode: 'x' } } as const;
    expect(decodeMessage(encodeAnswer(3, new EncodedAnswer(encode(error), true)))).toEqual({ type: 1, id: 3, error, result: null });
  });

  it('writes every msgid size the way msgpackr would', () => {
    const answer = new EncodedAnswer(encode('ok'), false);
    for (const id of [0, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1]) {
      expect(Buffer.from(encodeAnswer(id, answer)).equals(Buffer.from(encodeResponse(id, null, 'ok'))), `msgid ${id}`).toBe(true);
    }
  });

  it('rejects what is not a message with the right code', () => {
    const code = (frame: Uint8Array) => {
      try {
        decodeMessage(frame);
      } catch (error) {
        return (error as KilnError).code;
      }
      return 'accepted';
    };
    expect(code(new Uint8Array([0x92, 0x01]))).toBe('MALFORMED_FRAME');
    expect(code(new Uint8Array([0x01, 0x02]))).toBe('MALFORMED_FRAME'); // trailing bytes
    expect(code(encode('just a string'))).toBe('INVALID_MESSAGE');
    expect(code(encode([0, -1, 'm', []]))).toBe('INVALID_MESSAGE');
    expect(code(encode([0, 1, 'm']))).toBe('INVALID_MESSAGE');
    expect(code(encode([5, 1, 'm', []]))).toBe('INVALID_MESSAGE');
  });
});

describe('errors', () => {
  it('rebuilds every code from the wire and maps unknown codes to INTERNAL', () => {
    for (const code of ERROR_CODES) expect(errorFromWire({ code, message: 'x' }).code).toBe(code);
    expect(errorFromWire({ code: 'FROM_THE_FUTURE', message: 'x' }).code).toBe('INTERNAL');
    const error = new GuestError('boom', { guestCode: 'e' });
    expect(error).toBeInstanceOf(KilnError);
    expect(error.toWire()).toEqual({ code: 'GUEST_ERROR', message: 'boom', data: { guestCode: 'e' } });
  });

  it('validates invoke params', () => {
    expect(parseInvokeParams([{ function: 'f' }])).toEqual({ function: 'f', payload: new Uint8Array(0), contentType: 'application/octet-stream' });
    expect(() => parseInvokeParams([{ function: 'f', contentType: 5 }])).toThrow(/contentType/);
    expect(() => parseInvokeParams(['f'])).toThrow(/one parameter/);
  });
});
