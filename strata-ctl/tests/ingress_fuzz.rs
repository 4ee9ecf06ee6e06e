//! The ingress program against generated and mutated packets (short run;
//! `cargo xtask fuzz --ingress` runs a million): it never delivers a packet
//! that is not a valid data packet of the session, passes what is not
//! Strata's, and never errors. Needs root (loading BPF).

use strata_ctl::testbed::ingress_fuzz::{Expected, Kind, Policy, campaign};

#[test]
fn ingress_delivers_only_valid_data_packets_of_the_session() {
    strata_lab::require_root("the ingress fuzz test loads BPF programs");
    let report = campaign(20_000, 0x5354_5241, Policy::SessionOnly, &mut |_| {}).expect("campaign");
    assert_eq!(report.runs, 20_000);
    // Every kind of frame and outcome occurred, so the run checked something.
    for kind in
        [Kind::Valid, Kind::BitFlips, Kind::Truncated, Kind::LengthLie, Kind::RandomHeader, Kind::Random]
    {
        assert!(report.kinds.get(&kind).copied().unwrap_or(0) > 100, "{kind:?}: {report:?}");
    }
    for outcome in [Expected::Foreign, Expected::Dropped, Expected::Control, Expected::Delivered] {
        assert!(report.outcomes.get(&outcome).copied().unwrap_or(0) > 10, "{outcome:?}: {report:?}");
    }
    assert!(report.raw_ip > 5_000 && report.outer_v6 > 5_000, "{report:?}");
}
