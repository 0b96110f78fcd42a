//! The Rust SDK for Kiln function components (world `kiln:function/handler`,
//! see `wit/handler.wit`). No dependencies, no proc macros: it builds with a
//! plain `rustc` (1.63 or newer) for `wasm32-wasi`.
//!
//! ```ignore
//! fn handle(req: kiln::Request) -> kiln::Result {
//!     if req.body.is_empty() {
//!         return Err(kiln::Error::new("empty", "send me something"));
//!     }
//!     Ok(kiln::Response::new(req.body, req.content_type)) // echo, no copy
//! }
//! kiln::export_handler!(handle);
//! ```
//!
//! `export_handler!` defines the core exports Kiln calls (`handle`,
//! `cabi_realloc`, `cabi_post_handle`); the layout they implement is the
//! canonical ABI described in `docs/guests.md` §2.

use std::alloc::{self, Layout};

/// What the daemon tells the guest about this invocation.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub request_id: String,
    pub function_name: String,
    pub function_version: u32,
    /// Wall-clock deadline, milliseconds since the Unix epoch.
    pub deadline_ms: u64,
    /// The fuel the call starts with: the function's budget.
    pub remaining_fuel: u64,
}

/// The request, owned by the handler: its buffers are the ones the host
/// wrote, so moving `body` into the response copies nothing.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub body: Vec<u8>,
    /// May be empty.
    pub content_type: String,
    pub context: Context,
}

impl Request {
    /// The body as UTF-8 text, if it is valid UTF-8.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }
}

/// A successful response.
#[derive(Debug, Clone, Default)]
pub struct Response {
    pub body: Vec<u8>,
    pub content_type: String,
}

impl Response {
    pub fn new(body: impl Into<Vec<u8>>, content_type: impl Into<String>) -> Response {
        Response { body: body.into(), content_type: content_type.into() }
    }
    /// A `text/plain` response.
    pub fn text(body: impl Into<String>) -> Response {
        Response::new(body.into().into_bytes(), "text/plain")
    }
    /// An `application/json` response (the body is sent as given).
    pub fn json(body: impl Into<String>) -> Response {
        Response::new(body.into().into_bytes(), "application/json")
    }
}

/// A handled failure: the client gets `GUEST_ERROR` with `message` and
/// `data.guestCode = code`. A panic instead becomes `GUEST_TRAP`.
#[derive(Debug, Clone, Default)]
pub struct Error {
    pub code: String,
    pub message: String,
}

impl Error {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Error {
        Error { code: code.into(), message: message.into() }
    }
}

/// What a handler returns.
pub type Result = std::result::Result<Response, Error>;

/// Writes `line` and a newline to stderr: it is returned in the invocation's report.
pub fn log(line: &str) {
    eprintln!("{}", line);
}

/// The value of an environment variable from the function's `--env` config.
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Registers `fn(kiln::Request) -> kiln::Result` as the function's handler and
/// defines the core exports Kiln calls. Use it once, in the `cdylib` crate.
#[macro_export]
macro_rules! export_handler {
    ($handler:path) => {
        const _: () = {
            #[export_name = "handle"]
            pub unsafe extern "C" fn __kiln_handle(
                body: *mut u8,
                body_len: usize,
                content_type: *mut u8,
                content_type_len: usize,
                request_id: *mut u8,
                request_id_len: usize,
                function_name: *mut u8,
                function_name_len: usize,
                function_version: u32,
                deadline_ms: u64,
                remaining_fuel: u64,
            ) -> *mut u32 {
                $crate::__private::handle(
                    $handler,
                    body,
                    body_len,
                    content_type,
                    content_type_len,
                    request_id,
                    request_id_len,
                    function_name,
                    function_name_len,
                    function_version,
                    deadline_ms,
                    remaining_fuel,
                )
            }

            #[export_name = "cabi_realloc"]
            pub unsafe extern "C" fn __kiln_cabi_realloc(
                old: *mut u8,
                old_size: usize,
                align: usize,
                new_size: usize,
            ) -> *mut u8 {
                $crate::__private::realloc(old, old_size, align, new_size)
            }

            #[export_name = "cabi_post_handle"]
            pub unsafe extern "C" fn __kiln_cabi_post_handle(_ret: *mut u32) {
                $crate::__private::post_handle()
            }
        };
    };
}

/// The canonical-ABI glue behind `export_handler!`; not a public API.
#[doc(hidden)]
pub mod __private {
    use super::*;

    /// The 20-byte return area: discriminant, then two (pointer, length) pairs.
    static mut RET: [u32; 5] = [0; 5];
    /// The result buffers the return area points to, kept alive until
    /// `cabi_post_handle` (the host copies them out in between).
    static mut PENDING: Option<(Vec<u8>, Vec<u8>)> = None;

    /// `cabi_realloc`: the host allocates every request list and string with
    /// `(0, 0, 1, len)`, empty ones too. A zero-size allocation returns `align`.
    pub unsafe fn realloc(old: *mut u8, old_size: usize, align: usize, new_size: usize) -> *mut u8 {
        let align = if align == 0 { 1 } else { align };
        if new_size == 0 {
            if old_size != 0 {
                alloc::dealloc(old, Layout::from_size_align_unchecked(old_size, align));
            }
            return align as *mut u8;
        }
        let layout = Layout::from_size_align_unchecked(new_size, align);
        let out = if old_size == 0 {
            alloc::alloc(layout)
        } else {
            alloc::realloc(old, Layout::from_size_align_unchecked(old_size, align), new_size)
        };
        if out.is_null() {
            alloc::handle_alloc_error(layout); // aborts: a trap
        }
        out
    }

    /// Takes ownership of a request buffer allocated by `realloc(0, 0, 1, len)`.
    unsafe fn bytes(ptr: *mut u8, len: usize) -> Vec<u8> {
        if len == 0 {
            Vec::new()
        } else {
            Vec::from_raw_parts(ptr, len, len)
        }
    }

    unsafe fn string(ptr: *mut u8, len: usize) -> String {
        // The host sends valid UTF-8 (canonical ABI strings); never trust it blindly.
        String::from_utf8(bytes(ptr, len)).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    #[allow(clippy::too_many_arguments)]
    pub unsafe fn handle(
        handler: fn(Request) -> Result,
        body: *mut u8,
        body_len: usize,
        content_type: *mut u8,
        content_type_len: usize,
        request_id: *mut u8,
        request_id_len: usize,
        function_name: *mut u8,
        function_name_len: usize,
        function_version: u32,
        deadline_ms: u64,
        remaining_fuel: u64,
    ) -> *mut u32 {
        // A result the host never released (it discards the instance then, so
        // this only matters for robustness).
        PENDING = None;
        let request = Request {
            body: bytes(body, body_len),
            content_type: string(content_type, content_type_len),
            context: Context {
                request_id: string(request_id, request_id_len),
                function_name: string(function_name, function_name_len),
                function_version,
                deadline_ms,
                remaining_fuel,
            },
        };
        let (discriminant, first, second) = match handler(request) {
            Ok(response) => (0, response.body, response.content_type.into_bytes()),
            Err(error) => (1, error.code.into_bytes(), error.message.into_bytes()),
        };
        RET = [
            discriminant,
            first.as_ptr() as u32,
            first.len() as u32,
            second.as_ptr() as u32,
            second.len() as u32,
        ];
        PENDING = Some((first, second));
        RET.as_mut_ptr()
    }

    /// `cabi_post_handle`: frees the result buffers.
    pub unsafe fn post_handle() {
        PENDING = None;
    }
}
