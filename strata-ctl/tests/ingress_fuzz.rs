//! The ingress program against generated and mutated packets (short run;
//! `cargo xtask fuzz --ingress` runs a million per policy): it never
//! delivers a packet that is not a valid data packet of the session, fresh
//! to the anti-replay window (and, with authentication required, exactly as
//! signed), passes what is not Strata's, and never errors. Needs root
//! (loading BPF).

use strata_ctl::testbed::ingress_fuzz::{Expected, Kind, Policy, Report, campaign};

#[test]
fn ingress_delivers_only_valid_data_packets_of_the_session() {
    strata_lab::require_root("the ingress fuzz test loads BPF programs");
    let report = campaign(20_000, 0x5354_5241, Policy::SessionOnly, &mut |_| {}).expect("campaign");
    assert_covered(&report);
}

#[test]
fn ingress_with_auth_required_delivers_only_packets_as_signed() {
    strata_lab::require_root("the ingress fuzz test loads BPF programs");
    let report = campaign(20_000, 0x5354_5241, Policy::AuthRequired, &mut |_| {}).expect("campaign");
    assert_covered(&report);
    assert_eq!(report.forged_delivered, 0);
    // Tags were checked and failed, both ways.
    for reason in ["auth_missing", "auth_bad"] {
        assert!(report.drops.get(reason).copied().unwrap_or(0) > 100, "{reason}: {report:?}");
    }
}

/// Every kind of frame and outcome occurred, and every rule of the window
/// was met, so the run checked something.
fn assert_covered(report: &Report) {
    assert_eq!(report.runs, 20_000);
    for kind in
        [Kind::Valid, Kind::BitFlips, Kind::Truncated, Kind::LengthLie, Kind::RandomHeader, Kind::Random]
    {
        assert!(report.kinds.get(&kind).copied().unwrap_or(0) > 100, "{kind:?}: {report:?}");
    }
    for outcome in [Expected::Foreign, Expected::Dropped, Expected::Control, Expected::Delivered] {
        assert!(report.outcomes.get(&outcome).copied().unwrap_or(0) > 10, "{outcome:?}: {report:?}");
    }
    assert!(report.raw_ip > 5_000 && report.outer_v6 > 5_000, "{report:?}");
    for reason in ["duplicate", "too_old", "seq_jump"] {
        assert!(report.drops.get(reason).copied().unwrap_or(0) > 10, "{reason}: {report:?}");
    }
}
