//! What reaches an edge link's probe socket — probe replies, train replies,
//! feedback — as the prober reads it (`prober::classify`), and the
//! feedback ordering it applies: no input panics, and nothing is taken for
//! another link.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_ctl::inband::prober::{FeedbackOrder, Incoming, classify};

const SESSION: u32 = 0x5354_5241;

fuzz_target!(|data: &[u8]| {
    let mut order = FeedbackOrder::default();
    // The input is a run of datagrams, each preceded by its length byte,
    // so sequences of feedback reach the ordering too.
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let (datagram, next) = tail.split_at(usize::from(len).min(tail.len()));
        rest = next;
        let link = datagram.get(2).copied().unwrap_or(0);
        if let Some(incoming) = classify(datagram, SESSION, link) {
            assert_eq!(datagram[2], link);
            if let Incoming::Feedback { seq, .. } = incoming {
                let fresh = order.fresh(seq);
                assert!(!(fresh && order.fresh(seq)), "the same number twice");
            }
        }
    }
});
