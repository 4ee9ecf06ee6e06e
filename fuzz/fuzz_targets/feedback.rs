//! The hub's feedback payload as the edge decodes it: no input panics,
//! and a full-length payload encodes back to its bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_common::wire::FeedbackPayload;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = FeedbackPayload::decode(data)
        && data.len() >= FeedbackPayload::LEN
    {
        let mut out = [0u8; FeedbackPayload::LEN];
        f.encode(&mut out).expect("56 bytes");
        assert_eq!(out[..], data[..FeedbackPayload::LEN]);
    }
});
