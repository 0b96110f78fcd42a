// The JavaScript SDK for Kiln function components (world kiln:function/handler),
// built with componentize-js. A handler receives
//   { body: Uint8Array, contentType: string, context: { requestId, functionName,
//     functionVersion, deadlineMs (BigInt), remainingFuel (BigInt) } }
// and returns a response made with respond()/text()/json(), or throws fail().
import { getEnvironment } from 'kiln:function/environment@0.1.0';

const encoder = new TextEncoder();
let environment;

/** The function's environment variable `name` (its deploy config's env), or `fallback`. */
export function env(name, fallback = undefined) {
  // Read at first use, never at module load: the module's top level runs when the component is built.
  environment ??= new Map(getEnvironment());
  return environment.has(name) ? environment.get(name) : fallback;
}

/** A response with raw bytes (or a string, sent as UTF-8). */
export function respond(body, contentType = 'application/octet-stream') {
  return { body: typeof body === 'string' ? encoder.encode(body) : body, contentType };
}

export const text = (body) => respond(body, 'text/plain');
export const json = (value) => respond(JSON.stringify(value), 'application/json');

/** A handled error: the client gets GUEST_ERROR with this message and data.guestCode = code. */
export function fail(code, message) {
  return { code: String(code), message: String(message) };
}

const isFailure = (value) => value !== null && typeof value === 'object' && typeof value.code === 'string' && typeof value.message === 'string';

function uncaught(error) {
  if (isFailure(error)) throw error;
  // Anything else is a crash (GUEST_TRAP); say what it was before the instance goes.
  console.error(`uncaught exception: ${error && error.stack ? `${error.message}\n${error.stack}` : String(error)}`);
  throw error;
}

/** Wraps a handler (sync or async) as the `handle` export: `export const handle = serve((request) => …)`. */
export function serve(handler) {
  return (request) => {
    try {
      const result = handler(request);
      return result && typeof result.then === 'function' ? result.catch(uncaught) : result;
    } catch (error) {
      return uncaught(error);
    }
  };
}
