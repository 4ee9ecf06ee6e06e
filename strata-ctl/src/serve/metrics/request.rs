//! The request head of `GET /metrics`, read without I/O.
//!
//! Kept apart from the socket handling so that what a stranger's bytes can
//! do is decided by one pure function, which `fuzz/` feeds arbitrary input.

/// What a request head asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /metrics` (any query string).
    Metrics,
    /// A `GET` of another path.
    NotFound,
    /// Any other method, or no request line at all.
    MethodNotAllowed,
}

/// Whether `head` holds a complete request head (ends in an empty line).
pub fn complete(head: &[u8]) -> bool {
    head.windows(4).any(|w| w == b"\r\n\r\n")
}

/// The route of a request head: only the request line is read (method and
/// path; headers are ignored — there is nothing they could change).
pub fn route(head: &[u8]) -> Route {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|b| b.is_ascii_whitespace()).filter(|p| !p.is_empty());
    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    match (method, path) {
        (b"GET", b"/metrics") => Route::Metrics,
        (b"GET", _) => Route::NotFound,
        _ => Route::MethodNotAllowed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), Route::Metrics);
        assert_eq!(route(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"), Route::Metrics);
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b"POST /metrics HTTP/1.1\r\n\r\n"), Route::MethodNotAllowed);
        assert_eq!(route(b""), Route::MethodNotAllowed);
        assert_eq!(route(b"\xff\xfe GET"), Route::MethodNotAllowed);
        assert!(complete(b"GET / HTTP/1.1\r\n\r\n") && !complete(b"GET / HTTP/1.1\r\n"));
    }
}
