//! The reply line `strata-ctl status` reads from whatever answers on the
//! socket (`status::parse_reply`, the JSON document): no input panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_ctl::serve::status::parse_reply;

fuzz_target!(|data: &[u8]| {
    if let Ok(line) = std::str::from_utf8(data) {
        let _ = parse_reply(line);
    }
});
