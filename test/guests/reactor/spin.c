// Runaway guest: a loop that never ends and has no side effects at all.
__attribute__((export_name("spin"))) void spin(void) {
  for (;;) {
  }
}
