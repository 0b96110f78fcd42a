// Snapshot test guest: a reactor whose constructor does visible work once
// (fills a 64 KiB table, mallocs and fills a buffer, counts its own runs), so
// tests can tell a restored snapshot from a fresh initialisation and check
// that state written by one instance never leaks into the next.
#include <stdint.h>
#include <stdlib.h>

#define TABLE_WORDS 16384 /* 64 KiB */
#define BUFFER_BYTES 4096

static uint32_t table[TABLE_WORDS];
static volatile int init_runs;
static uint8_t *buffer;
static uint32_t counter;
/* Initialised data: lands in an active data segment, which the restorable module turns passive. */
static uint32_t seed = 2463534242u;
static const char greeting[] = "restored, not re-initialised";

__attribute__((constructor)) static void snapinit_constructor(void) {
  init_runs++;
  uint32_t x = seed;
  for (int i = 0; i < TABLE_WORDS; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    table[i] = x;
  }
  buffer = malloc(BUFFER_BYTES);
  for (int i = 0; i < BUFFER_BYTES; i++) buffer[i] = (uint8_t)(i * 7 + 3);
}

__attribute__((export_name("init_runs"))) int get_init_runs(void) { return init_runs; }
__attribute__((export_name("table_at"))) uint32_t table_at(int i) { return table[i & (TABLE_WORDS - 1)]; }
__attribute__((export_name("table_set"))) void table_set(int i, uint32_t v) { table[i & (TABLE_WORDS - 1)] = v; }

__attribute__((export_name("table_sum"))) uint32_t table_sum(void) {
  uint32_t sum = 0;
  for (int i = 0; i < TABLE_WORDS; i++) sum = sum * 31 + table[i];
  return sum;
}

__attribute__((export_name("buffer_ptr"))) uintptr_t buffer_ptr(void) { return (uintptr_t)buffer; }

__attribute__((export_name("buffer_sum"))) uint32_t buffer_sum(void) {
  uint32_t sum = 0;
  for (int i = 0; i < BUFFER_BYTES; i++) sum = sum * 31 + buffer[i];
  return sum;
}

__attribute__((export_name("buffer_set"))) void buffer_set(int i, int v) { buffer[i & (BUFFER_BYTES - 1)] = (uint8_t)v; }

__attribute__((export_name("greeting_at"))) int greeting_at(int i) { return greeting[i % (int)sizeof greeting]; }
__attribute__((export_name("seed_value"))) uint32_t seed_value(void) { return seed; }
__attribute__((export_name("seed_set"))) void seed_set(uint32_t v) { seed = v; }

/** Increments and returns a counter in a static: visible state for isolation tests. */
__attribute__((export_name("bump"))) uint32_t bump(void) { return ++counter; }

/** Allocates `n` bytes filled with `fill`; returns the pointer (0 on failure). */
__attribute__((export_name("alloc_fill"))) uintptr_t alloc_fill(int n, int fill) {
  uint8_t *p = malloc((size_t)n);
  if (!p) return 0;
  for (int i = 0; i < n; i++) p[i] = (uint8_t)fill;
  return (uintptr_t)p;
}

/** Grows memory by `pages` (returns the old size in pages, or -1). */
__attribute__((export_name("grow"))) int grow(int pages) { return __builtin_wasm_memory_grow(0, pages); }

/** A handler-shaped call for the cold-start benchmark: a few reads of init's work. */
__attribute__((export_name("work"))) uint32_t work(int i) {
  return table[i & (TABLE_WORDS - 1)] ^ buffer[i & (BUFFER_BYTES - 1)] ^ counter;
}
