//! The demo function: the shared example every Kiln SDK implements.
//!   "greet:NAME"  -> {"greeting":"<$GREETING or Hello>, NAME!"} (application/json)
//!   "fail"        -> a handled error (code bad_input)
//!   "trap"        -> panics: GUEST_TRAP, with the panic message in the report's stderr
//!   anything else -> the input upper-cased (text/plain)
//! Every call logs one line to stderr.

fn hello(mut req: kiln::Request) -> kiln::Result {
    eprintln!("hello: handling {} bytes", req.body.len());
    match req.body.as_slice() {
        b"fail" => return Err(kiln::Error::new("bad_input", "asked to fail")),
        b"trap" => panic!("asked to trap"),
        _ => {}
    }
    if let Some(name) = req.body.strip_prefix(b"greet:") {
        let greeting = kiln::env("GREETING").unwrap_or_else(|| "Hello".to_string());
        let json = format!("{{\"greeting\":\"{}, {}!\"}}", greeting, String::from_utf8_lossy(name));
        return Ok(kiln::Response::json(json));
    }
    // ASCII upper-casing of the raw bytes, in place, like the C example's toupper.
    req.body.make_ascii_uppercase();
    Ok(kiln::Response::new(req.body, "text/plain"))
}

kiln::export_handler!(hello);
