// The demo function: the shared example every Kiln SDK implements.
//   "greet:NAME"  -> {"greeting":"<$GREETING or Hello>, NAME!"} (application/json)
//   "fail"        -> a handled error (code bad_input)
//   "trap"        -> logs a line and aborts: GUEST_TRAP, with that line in the report's stderr
//   anything else -> the input upper-cased (text/plain)
// Every call logs one line to stderr.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "../kiln.hpp"

static kiln::Result hello(const kiln::Request &req) {
  std::fprintf(stderr, "hello: handling %zu bytes\n", req.body.size());
  if (req.body == "fail") return kiln::Error{"bad_input", "asked to fail"};
  if (req.body == "trap") {
    kiln::log("hello: asked to trap");
    std::abort();
  }
  if (req.body.substr(0, 6) == "greet:") {
    std::string json = "{\"greeting\":\"";
    json += kiln::env("GREETING", "Hello");
    json += ", ";
    json += req.body.substr(6);
    json += "!\"}";
    return kiln::Response::json(std::move(json));
  }
  // ASCII upper-casing of the raw bytes, like the C example's toupper.
  std::string upper(req.body);
  for (char &c : upper) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return kiln::Response::text(std::move(upper));
}

KILN_HANDLER(hello)
