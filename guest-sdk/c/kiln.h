/*
 * kiln.h — the C SDK for Kiln function components (world kiln:function/handler).
 *
 * Include it in exactly one .c file of your function and define
 *
 *     int kiln_handle(const kiln_request *req, kiln_response *res);
 *
 * Return 0 after filling `res` (kiln_respond / kiln_respond_str), or non-zero
 * after kiln_fail(res, code, message). Build with
 *     clang --target=wasm32-wasi -mexec-model=reactor -O2 -Wl,--strip-debug
 * and turn the module into a component with jco (see scripts/build-guests.mjs).
 *
 * Layout (canonical ABI, see docs/guests.md): `handle` takes the request record
 * flattened to 11 core values and returns a pointer to a 20-byte return area:
 *   +0 u8 discriminant (0 ok, 1 err), +4 ptr, +8 len, +12 ptr, +16 len.
 */
#ifndef KILN_H
#define KILN_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  const uint8_t *ptr;
  size_t len;
} kiln_bytes;

typedef struct {
  kiln_bytes request_id;
  kiln_bytes function_name;
  uint32_t function_version;
  uint64_t deadline_ms;
  uint64_t remaining_fuel;
} kiln_context;

typedef struct {
  kiln_bytes body;
  kiln_bytes content_type;
  kiln_context context;
} kiln_request;

/* Filled by the handler; the SDK owns and frees the buffers after the call. */
typedef struct {
  uint8_t *first;  /* body (ok) or error code (err) */
  size_t first_len;
  uint8_t *second; /* content type (ok) or error message (err) */
  size_t second_len;
} kiln_response;

int kiln_handle(const kiln_request *req, kiln_response *res);

static uint8_t *kiln__copy(const void *data, size_t len) {
  uint8_t *out = (uint8_t *)malloc(len ? len : 1);
  if (!out) abort();
  if (len) memcpy(out, data, len);
  return out;
}

/* Sets the response body (copied) and content type. Returns 0 for `return kiln_respond(...)`. */
static inline int kiln_respond(kiln_response *res, const void *body, size_t len, const char *content_type) {
  res->first = kiln__copy(body, len);
  res->first_len = len;
  res->second_len = strlen(content_type);
  res->second = kiln__copy(content_type, res->second_len);
  return 0;
}

static inline int kiln_respond_str(kiln_response *res, const char *body, const char *content_type) {
  return kiln_respond(res, body, strlen(body), content_type);
}

/* Sets a handled error. Returns 1 for `return kiln_fail(...)`. */
static inline int kiln_fail(kiln_response *res, const char *code, const char *message) {
  kiln_respond(res, code, strlen(code), message);
  return 1;
}

/* --- canonical ABI glue: exported to the host, not called by handlers --- */

__attribute__((export_name("cabi_realloc")))
void *cabi_realloc(void *old, size_t old_size, size_t align, size_t new_size) {
  (void)old_size;
  (void)align; /* malloc's alignment (16) covers every type in this world */
  if (new_size == 0) return (void *)align;
  void *out = realloc(old, new_size);
  if (!out) abort();
  return out;
}

static uint32_t kiln__ret[5];

__attribute__((export_name("handle")))
uint32_t *kiln__export_handle(uint8_t *body, size_t body_len, uint8_t *ct, size_t ct_len,
                              uint8_t *rid, size_t rid_len, uint8_t *fname, size_t fname_len,
                              uint32_t fversion, uint64_t deadline_ms, uint64_t remaining_fuel) {
  kiln_request req = {
      {body, body_len},
      {ct, ct_len},
      {{rid, rid_len}, {fname, fname_len}, fversion, deadline_ms, remaining_fuel},
  };
  kiln_response res = {0};
  int failed = kiln_handle(&req, &res);
  /* The request lists were allocated for us by the host through cabi_realloc. */
  if (body_len) free(body);
  if (ct_len) free(ct);
  if (rid_len) free(rid);
  if (fname_len) free(fname);
  kiln__ret[0] = failed ? 1 : 0;
  kiln__ret[1] = (uint32_t)(uintptr_t)res.first;
  kiln__ret[2] = (uint32_t)res.first_len;
  kiln__ret[3] = (uint32_t)(uintptr_t)res.second;
  kiln__ret[4] = (uint32_t)res.second_len;
  return kiln__ret;
}

__attribute__((export_name("cabi_post_handle")))
void kiln__post_handle(uint32_t *ret) {
  free((void *)(uintptr_t)ret[1]);
  free((void *)(uintptr_t)ret[3]);
}

#endif /* KILN_H */
