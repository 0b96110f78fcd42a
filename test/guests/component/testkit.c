/* A component whose behaviour is chosen by its input, so one artifact covers
 * every engine path the tests need. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../../guest-sdk/c/kiln.h"

static int invocations; /* lives in the snapshot: fresh instances see 0 */

static int is(const kiln_request *req, const char *word) {
  size_t n = strlen(word);
  return req->body.len == n && memcmp(req->body.ptr, word, n) == 0;
}

static int starts(const kiln_request *req, const char *prefix) {
  size_t n = strlen(prefix);
  return req->body.len >= n && memcmp(req->body.ptr, prefix, n) == 0;
}

static volatile int sink;
static char *volatile retained;

/* Deep recursion that keeps nothing in linear memory, so it exhausts the
 * engine's native stack rather than the C shadow stack. */
__attribute__((noinline)) static int recurse(int depth) {
  if (depth < 0) return 0;
  return recurse(depth + 1) * 3 + sink;
}

int kiln_handle(const kiln_request *req, kiln_response *res) {
  char text[128];
  invocations++;
  if (is(req, "trap")) {
    fprintf(stderr, "about to trap\n");
    __builtin_trap();
  }
  if (is(req, "loop")) {
    for (volatile int i = 0;; i++) {
    }
  }
  if (is(req, "recurse")) return recurse(0);
  if (is(req, "memory-bomb")) {
    for (;;) {
      char *p = malloc(1 << 20);
      if (!p) return kiln_fail(res, "oom", "malloc returned NULL");
      memset(p, 1, 1 << 20);
      retained = p; /* observable, so the allocation is not optimised away */
    }
  }
  if (is(req, "memory-trap")) { /* allocates until malloc fails, then crashes: MEMORY_LIMIT */
    for (;;) {
      char *p = malloc(1 << 20);
      if (!p) __builtin_trap();
      memset(p, 1, 1 << 20);
      retained = p;
    }
  }
  if (is(req, "spam-stdout")) {
    static char chunk[65536];
    memset(chunk, 'x', sizeof chunk);
    for (int i = 0; i < 1600; i++) fwrite(chunk, 1, sizeof chunk, stdout); /* 100 MiB */
    fflush(stdout);
    return kiln_respond_str(res, "spammed", "text/plain");
  }
  if (is(req, "exit")) exit(3);
  if (is(req, "count")) {
    snprintf(text, sizeof text, "%d", invocations);
    return kiln_respond_str(res, text, "text/plain");
  }
  if (is(req, "context")) {
    snprintf(text, sizeof text, "%.*s v%u fuel>0:%d", (int)req->context.function_name.len,
             (const char *)req->context.function_name.ptr, req->context.function_version,
             req->context.remaining_fuel > 0);
    return kiln_respond_str(res, text, "text/plain");
  }
  if (starts(req, "env:")) {
    snprintf(text, sizeof text, "%.*s", (int)req->body.len - 4, (const char *)req->body.ptr + 4);
    const char *value = getenv(text);
    return kiln_respond_str(res, value ? value : "(unset)", "text/plain");
  }
  if (is(req, "files")) {
    FILE *f = fopen("/etc/passwd", "r");
    return kiln_respond_str(res, f ? "opened" : "denied", "text/plain");
  }
  if (is(req, "big-response")) {
    size_t n = 7u << 20;
    char *big = malloc(n);
    memset(big, 'y', n);
    return kiln_respond(res, big, n, "application/octet-stream");
  }
  if (starts(req, "spin:")) { /* busy for N ms of wall time: a CPU-heavy guest */
    long ms = strtol((const char *)req->body.ptr + 5, NULL, 10);
    struct timespec now, start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    do {
      for (volatile int i = 0; i < 1000; i++) {
      }
      clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 < ms);
    return kiln_respond_str(res, "spun", "text/plain");
  }
  if (is(req, "fail")) return kiln_fail(res, "bad_input", "asked to fail");
  fprintf(stdout, "echoing %zu bytes\n", req->body.len);
  return kiln_respond(res, req->body.ptr, req->body.len, "application/octet-stream");
}
