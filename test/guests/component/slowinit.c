/* A handler whose constructor takes ~200 ms: the snapshot's reason to exist.
 * It counts its own runs, so a test can prove init ran once per prepare. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../../../guest-sdk/c/kiln.h"

static unsigned init_runs;
static unsigned table[65536];
static unsigned calls;
static unsigned char nonce[16]; /* random at init: every prepare makes a different snapshot */

__attribute__((constructor)) static void expensive_init(void) {
  init_runs++;
  fprintf(stderr, "expensive_init ran\n"); /* seen only where init runs: at prepare */
  getentropy(nonce, sizeof nonce);
  unsigned x = 1;
  for (unsigned i = 0; i < 180u * 1000u * 1000u; i++) {
    x = x * 1664525u + 1013904223u;
    table[i & 65535] ^= x;
  }
}

int kiln_handle(const kiln_request *req, kiln_response *res) {
  char text[64];
  calls++;
  if (req->body.len == 4 && memcmp(req->body.ptr, "trap", 4) == 0) __builtin_trap();
  unsigned sum = 0;
  for (unsigned i = 0; i < 65536; i++) sum ^= table[i];
  snprintf(text, sizeof text, "init_runs=%u calls=%u checksum=%08x", init_runs, calls, sum);
  return kiln_respond_str(res, text, "text/plain");
}
