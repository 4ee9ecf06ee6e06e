//! The request line the daemon reads on its status socket
//! (`status::Request::parse`): no input panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_ctl::serve::status::Request;

fuzz_target!(|data: &[u8]| {
    if Request::parse(data).is_ok() {
        assert!(matches!(data.trim_ascii(), b"status" | b"reload"));
    }
});
