//! The request head `/metrics` reads from any client that can connect
//! (`request::route`, `request::complete`): no input panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_ctl::serve::metrics::request::{Route, complete, route};

fuzz_target!(|data: &[u8]| {
    let _ = complete(data);
    if route(data) == Route::Metrics {
        let method = data.split(|b| b.is_ascii_whitespace()).find(|p| !p.is_empty());
        assert_eq!(method, Some(&b"GET"[..]));
    }
});
