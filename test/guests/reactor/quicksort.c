// Sorting guests: our own quicksort (branchy loops, recursion) and libc's
// qsort (an indirect call per comparison) over `n` pseudo-random ints, up to
// 1M. Both return a checksum of the sorted array, or 0 if it is not sorted.
#include <stdint.h>
#include <stdlib.h>

#define MAX (1 << 20)
static int32_t values[MAX];

static uint32_t fill(uint32_t n, uint32_t seed) {
  if (n > MAX) n = MAX;
  uint32_t x = seed | 1;
  for (uint32_t i = 0; i < n; i++) {
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;
    values[i] = (int32_t)x;
  }
  return n;
}

static uint32_t checksum(uint32_t n) {
  uint32_t sum = 0;
  for (uint32_t i = 0; i < n; i++) {
    if (i > 0 && values[i - 1] > values[i]) return 0;
    sum = sum * 31 + (uint32_t)values[i];
  }
  return sum;
}

static void quicksort(int32_t *a, int32_t lo, int32_t hi) {
  while (lo < hi) {
    int32_t pivot = a[lo + (hi - lo) / 2], i = lo, j = hi;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) {
        int32_t t = a[i];
        a[i++] = a[j];
        a[j--] = t;
      }
    }
    // Recurse into the smaller half, loop on the larger: bounded stack.
    if (j - lo < hi - i) {
      quicksort(a, lo, j);
      lo = i;
    } else {
      quicksort(a, i, hi);
      hi = j;
    }
  }
}

static int compare(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

__attribute__((export_name("sort_own"))) uint32_t sort_own(uint32_t n, uint32_t seed) {
  n = fill(n, seed);
  quicksort(values, 0, (int32_t)n - 1);
  return checksum(n);
}

__attribute__((export_name("sort_libc"))) uint32_t sort_libc(uint32_t n, uint32_t seed) {
  n = fill(n, seed);
  qsort(values, n, sizeof values[0], compare);
  return checksum(n);
}
