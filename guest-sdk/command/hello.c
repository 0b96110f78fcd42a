/* The demo function as a plain WASI preview-1 command: the way any language
 * with a wasm32-wasi target can be a Kiln function, no SDK needed.
 *   stdin  = the request payload      stdout = the response payload
 *   stderr = logs (captured)          exit status != 0 = GUEST_ERROR
 *   "greet:NAME"  -> {"greeting":"<$GREETING or Hello>, NAME!"}
 *   "fail"        -> exit status 1 after saying why on stderr
 *   "trap"        -> abort(): GUEST_TRAP
 *   anything else -> the input upper-cased */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
  static char input[1 << 20];
  size_t n = fread(input, 1, sizeof input, stdin);
  fprintf(stderr, "hello: handling %zu bytes\n", n);
  if (n == 4 && memcmp(input, "fail", 4) == 0) {
    fprintf(stderr, "asked to fail\n");
    return 1;
  }
  if (n == 4 && memcmp(input, "trap", 4) == 0) {
    fprintf(stderr, "hello: asked to trap\n");
    abort();
  }
  if (n >= 6 && memcmp(input, "greet:", 6) == 0) {
    const char *greeting = getenv("GREETING");
    printf("{\"greeting\":\"%s, %.*s!\"}", greeting ? greeting : "Hello", (int)(n - 6), input + 6);
    return 0;
  }
  for (size_t i = 0; i < n; i++) input[i] = (char)toupper((unsigned char)input[i]);
  fwrite(input, 1, n, stdout);
  return 0;
}
