// Runaway guest: recursion until `n` reaches `limit` (never, for limit < 0).
// The volatile store after the call keeps it a real call, not a loop.
volatile int sink;

__attribute__((export_name("depth"))) int depth(int n, int limit) {
  if (n == limit) return n;
  int r = depth(n + 1, limit);
  sink = n;
  return r;
}
