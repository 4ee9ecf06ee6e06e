//! What reaches the hub's control socket, as the hub reads it and builds
//! its reply (`Header::parse`, `hub::reply`): no input panics, only probes
//! are answered, and a reply is a valid probe reply no longer than the
//! probe (the hub reflects nothing bigger than what it received, but the
//! 8-byte receive time of a train probe).
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_common::wire::{Header, PacketType};
use strata_ctl::inband::{auth::ControlKey, hub::reply};

const SESSION: u32 = 0x5354_5241;

fuzz_target!(|data: &[u8]| {
    let Ok((fields, payload)) = Header::parse(data, SESSION, 8) else { return };
    match reply(&ControlKey::default(), &fields, payload, 0x0102_0304_0506_0708) {
        Some(out) => {
            assert_eq!(fields.packet_type, PacketType::Probe);
            assert!(out.len() <= data.len().max(28));
            let (echoed, _) = Header::parse(&out, SESSION, 8).expect("a valid reply");
            assert_eq!(echoed.packet_type, PacketType::ProbeReply);
            assert_eq!(echoed.link_id, fields.link_id);
        }
        None => assert_ne!(fields.packet_type, PacketType::Probe),
    }
});
