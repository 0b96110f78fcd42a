/* A WASI preview-1 command: the event arrives on stdin, the response leaves on stdout.
 * Special inputs exercise the failure paths. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
  static char buf[1 << 16];
  size_t n = fread(buf, 1, sizeof buf, stdin);
  if (n == 4 && memcmp(buf, "fail", 4) == 0) {
    fprintf(stderr, "command failing on request\n");
    return 2;
  }
  if (n == 4 && memcmp(buf, "trap", 4) == 0) __builtin_trap();
  if (n == 11 && memcmp(buf, "spam-stdout", 11) == 0) {
    static char chunk[65536];
    memset(chunk, 'x', sizeof chunk);
    for (int i = 0; i < 1600; i++) fwrite(chunk, 1, sizeof chunk, stdout);
    return 0;
  }
  if (n > 4 && memcmp(buf, "env:", 4) == 0) {
    buf[n] = 0;
    const char *value = getenv(buf + 4);
    fputs(value ? value : "(unset)", stdout);
    return 0;
  }
  fprintf(stderr, "command read %zu bytes\n", n);
  for (size_t i = 0; i < n; i++) buf[i] = (char)(buf[i] >= 'a' && buf[i] <= 'z' ? buf[i] - 32 : buf[i]);
  fwrite(buf, 1, n, stdout);
  return 0;
}
