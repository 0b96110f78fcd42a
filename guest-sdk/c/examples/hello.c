/* The demo function: the shared example every Kiln SDK implements.
 *   "greet:NAME"  -> {"greeting":"<$GREETING or Hello>, NAME!"} (application/json)
 *   "fail"        -> a handled error (code bad_input)
 *   "trap"        -> logs a line and aborts: GUEST_TRAP, with that line in the report
 *   anything else -> the input upper-cased (text/plain)
 * Every call logs one line to stderr. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kiln.h"

int kiln_handle(const kiln_request *req, kiln_response *res) {
  fprintf(stderr, "hello: handling %zu bytes\n", req->body.len);
  if (req->body.len == 4 && memcmp(req->body.ptr, "fail", 4) == 0) {
    return kiln_fail(res, "bad_input", "asked to fail");
  }
  if (req->body.len == 4 && memcmp(req->body.ptr, "trap", 4) == 0) {
    fprintf(stderr, "hello: asked to trap\n");
    abort();
  }
  if (req->body.len >= 6 && memcmp(req->body.ptr, "greet:", 6) == 0) {
    const char *greeting = getenv("GREETING");
    if (!greeting) greeting = "Hello";
    size_t name_len = req->body.len - 6;
    size_t cap = strlen(greeting) + name_len + 32;
    char *json = malloc(cap);
    int n = snprintf(json, cap, "{\"greeting\":\"%s, %.*s!\"}", greeting, (int)name_len,
                     (const char *)req->body.ptr + 6);
    kiln_respond(res, json, (size_t)n, "application/json");
    free(json);
    return 0;
  }
  uint8_t *upper = malloc(req->body.len ? req->body.len : 1);
  for (size_t i = 0; i < req->body.len; i++) upper[i] = (uint8_t)toupper(req->body.ptr[i]);
  kiln_respond(res, upper, req->body.len, "text/plain");
  free(upper);
  return 0;
}
