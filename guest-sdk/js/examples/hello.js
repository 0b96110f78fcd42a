// The demo function in JavaScript (see ../README.md).
//   "greet:NAME"  -> {"greeting":"<$GREETING or Hello>, NAME!"} (application/json)
//   "fail"        -> a handled error (code bad_input)
//   "trap"        -> an uncaught exception: GUEST_TRAP, with its message in the report's stderr
//   anything else -> the input upper-cased (text/plain)
// Every call logs one line to stderr.
import { env, fail, json, respond, serve } from '../kiln.js';

const decoder = new TextDecoder();

export const handle = serve((request) => {
  const { body } = request;
  console.error(`hello: handling ${body.length} bytes`);
  const input = decoder.decode(body);
  if (input === 'fail') throw fail('bad_input', 'asked to fail');
  if (input === 'trap') throw new Error('asked to trap');
  if (input.startsWith('greet:')) return json({ greeting: `${env('GREETING', 'Hello')}, ${input.slice(6)}!` });
  // Upper-case ASCII letters byte for byte, like the other SDKs' examples.
  return respond(body.map((b) => (b >= 0x61 && b <= 0x7a ? b - 32 : b)), 'text/plain');
});
