//! The Strata header as every receiver parses it (`Header::parse`, the same
//! `validate` the kernel runs): no input panics, and what it accepts has the
//! length it claims and encodes back to the bytes it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_common::wire::{HEADER_LEN, Header};

const SESSION: u32 = 0x5354_5241;

fuzz_target!(|data: &[u8]| {
    // The receiver's session is taken from the input half the time, so
    // the checks past the session are reached without guessing it.
    let session = match data.get(4..8) {
        Some(s) if data.first().is_some_and(|b| b & 1 == 1) => u32::from_be_bytes([s[0], s[1], s[2], s[3]]),
        _ => SESSION,
    };
    if let Ok((fields, payload)) = Header::parse(data, session, 8) {
        let words = usize::from(data[3]);
        assert_eq!(payload.len(), data.len() - words * 4);
        assert!(fields.link_id < 8 && fields.session == session);
        let mut out = [0u8; HEADER_LEN];
        Header::new(fields).encode(&mut out).expect("20 bytes");
        // Everything but the header-words byte is what came in.
        assert_eq!(out[..3], data[..3]);
        assert_eq!(out[4..], data[4..HEADER_LEN]);
    }
});
