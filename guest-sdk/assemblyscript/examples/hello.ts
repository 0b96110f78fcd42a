// The demo function: the shared example every Kiln SDK implements.
//   "greet:NAME"  -> {"greeting":"<$GREETING or Hello>, NAME!"} (application/json)
//   "fail"        -> a handled error (code bad_input)
//   "trap"        -> throws (= aborts): GUEST_TRAP, with the abort message in the report's stderr
//   anything else -> the input upper-cased (text/plain)
// Every call logs one line to stderr.
import { Request, Response, serve, respond, respondText, fail, log } from "../assembly/kiln";
export { handle, cabi_realloc, cabi_post_handle } from "../assembly/kiln";

serve((req: Request): Response => {
  log("hello: handling " + req.body.length.toString() + " bytes");
  const text = req.text();
  if (text == "fail") return fail("bad_input", "asked to fail");
  if (text == "trap") throw new Error("asked to trap"); // AssemblyScript: throw = abort
  if (text.startsWith("greet:")) {
    const env = process.env;
    const greeting = env.has("GREETING") ? env.get("GREETING") : "Hello";
    return respondText('{"greeting":"' + greeting + ", " + text.substring(6) + '!"}', "application/json");
  }
  // ASCII upper-casing of the raw bytes, like the C example's toupper.
  const upper = new Uint8Array(req.body.length);
  for (let i = 0; i < req.body.length; i++) {
    const c = req.body[i];
    upper[i] = c >= 0x61 && c <= 0x7a ? c - 0x20 : c;
  }
  return respond(upper, "text/plain");
});
