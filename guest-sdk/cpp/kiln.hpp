// kiln.hpp — the C++ SDK for Kiln function components (world kiln:function/handler).
//
// A thin, header-only layer over the C SDK (../c/kiln.h), which does the
// canonical-ABI work. Include it in exactly one .cpp file of your function:
//
//     #include "kiln.hpp"
//
//     kiln::Result handle(const kiln::Request &req) {
//       if (req.body.empty()) return kiln::Error{"empty", "send me something"};
//       return kiln::Response::bytes(req.body, req.content_type);
//     }
//     KILN_HANDLER(handle)
//
// Build (C++17, no exceptions: clang 14 cannot unwind on wasm32-wasi):
//     clang++ --target=wasm32-wasi -mexec-model=reactor -std=c++17 -O2 \
//       -fno-exceptions -Wl,--strip-debug -o fn.core.wasm fn.cpp
// then wrap the core module into a component with jco (see README.md).
#ifndef KILN_HPP
#define KILN_HPP

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../c/kiln.h"

namespace kiln {

// What the daemon tells the guest about this invocation. The views point into
// buffers that live until the handler returns: copy what you keep.
struct Context {
  std::string_view request_id;
  std::string_view function_name;
  uint32_t function_version = 0;
  uint64_t deadline_ms = 0;     // wall-clock deadline, ms since the Unix epoch
  uint64_t remaining_fuel = 0;  // the fuel the call starts with
};

struct Request {
  std::string_view body;          // raw bytes (not NUL-terminated, may hold NULs)
  std::string_view content_type;  // may be empty
  Context context;

  const uint8_t *data() const { return reinterpret_cast<const uint8_t *>(body.data()); }
  size_t size() const { return body.size(); }
};

struct Response {
  std::string body;  // bytes; std::string is used as a byte buffer
  std::string content_type;

  static Response text(std::string body, std::string content_type = "text/plain") {
    return Response{std::move(body), std::move(content_type)};
  }
  static Response json(std::string body) { return Response{std::move(body), "application/json"}; }
  static Response bytes(std::string_view body, std::string content_type = "application/octet-stream") {
    return Response{std::string(body), std::move(content_type)};
  }
  static Response bytes(const std::vector<uint8_t> &body, std::string content_type = "application/octet-stream") {
    return Response{std::string(body.begin(), body.end()), std::move(content_type)};
  }
};

// A handled failure: the client gets GUEST_ERROR with `message` and data.guestCode = `code`.
struct Error {
  std::string code;
  std::string message;
};

// Either a Response or an Error; both convert implicitly, so a handler can
// `return kiln::Response::text(...)` or `return kiln::Error{"code", "message"}`.
class Result {
 public:
  Result(Response response) : ok_(true), response_(std::move(response)) {}
  Result(Error error) : ok_(false), error_(std::move(error)) {}

  bool ok() const { return ok_; }
  const Response &response() const { return response_; }
  const Error &error() const { return error_; }

 private:
  bool ok_;
  Response response_;
  Error error_;
};

// Writes `line` and a newline to stderr: it is returned in the invocation's report.
inline void log(std::string_view line) {
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fputc('\n', stderr);
}

// The value of an environment variable from the function's --env config, or `fallback`.
inline std::string_view env(const char *name, std::string_view fallback = {}) {
  const char *value = std::getenv(name);
  return value ? std::string_view(value) : fallback;
}

namespace detail {
inline std::string_view view(kiln_bytes bytes) {
  return std::string_view(reinterpret_cast<const char *>(bytes.ptr), bytes.len);
}

// Copies a result pair into the C SDK's response (freed in cabi_post_handle).
inline void fill(kiln_response *res, std::string_view first, std::string_view second) {
  res->first = kiln__copy(first.data(), first.size());
  res->first_len = first.size();
  res->second = kiln__copy(second.data(), second.size());
  res->second_len = second.size();
}

template <typename Handler>
int dispatch(Handler &&handler, const kiln_request *raw, kiln_response *res) {
  Request req{view(raw->body),
              view(raw->content_type),
              Context{view(raw->context.request_id), view(raw->context.function_name),
                      raw->context.function_version, raw->context.deadline_ms, raw->context.remaining_fuel}};
  Result result = handler(static_cast<const Request &>(req));
  if (result.ok()) {
    fill(res, result.response().body, result.response().content_type);
    return 0;
  }
  fill(res, result.error().code, result.error().message);
  return 1;
}
}  // namespace detail

}  // namespace kiln

// Registers the handler: a function, or any callable object, taking a
// `const kiln::Request &` and returning a `kiln::Result`. Use it once, at
// namespace scope, in the file that includes kiln.hpp. (Variadic, so a lambda
// with top-level commas can be passed directly.)
#define KILN_HANDLER(...)                                                    \
  int kiln_handle(const kiln_request *kiln__req, kiln_response *kiln__res) { \
    return ::kiln::detail::dispatch(__VA_ARGS__, kiln__req, kiln__res);      \
  }

#endif  // KILN_HPP
