//! Handshake messages as the hub and the edge receive them: any bytes go
//! through the parser and into the hub's Noise responder (with a car on its
//! allowlist) and an edge's pending initiation. No input panics, and none
//! is admitted or completes a session: only a holder of a listed car's
//! private key (or the hub's) can produce one that does.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use strata_ctl::auth::{
    handshake::{Car, Initiator, Responder},
    keys::StaticKey,
    message,
};

const SESSION: u32 = 0x5354_5241;

struct Keys {
    hub: StaticKey,
    car: StaticKey,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        hub: StaticKey::generate().expect("hub key"),
        car: StaticKey::generate().expect("car key"),
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = message::parse(data);
    let k = keys();
    let car = Car { name: "car".into(), public: k.car.public, session: SESSION };
    let mut hub = Responder::new(k.hub.clone(), vec![car], 0);
    assert!(hub.on_initiation(SESSION, data).is_err(), "a stranger's bytes were admitted");
    let mut edge = Initiator::new(k.car.clone(), k.hub.public, SESSION);
    if edge.initiate(1_000_000_000, 7).is_ok() {
        assert!(edge.on_response(data).is_err(), "a stranger's bytes completed the handshake");
    }
});
