//! `strata-ingress-fuzz [RUNS] [SEED] [auth|session|both]`: the ingress
//! program fed RUNS generated and mutated packets through
//! `BPF_PROG_TEST_RUN` (default one million) per policy — with
//! authentication required (the testbed's keys installed; tagged frames
//! mutated after tagging) and without keys — every verdict checked against
//! the oracle of `strata_ctl::testbed::ingress_fuzz`. Prints one JSON line
//! of counts per policy; exits 1 on the first disagreement, or if anything
//! not as signed was delivered with authentication required. Needs root.
//! Run by `cargo xtask fuzz --ingress`.

use std::{process::ExitCode, time::Instant};

use strata_ctl::testbed::ingress_fuzz::{Policy, campaign};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let runs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0x5354_5241);
    let policies: &[Policy] = match args.next().as_deref() {
        Some("auth") => &[Policy::AuthRequired],
        Some("session") => &[Policy::SessionOnly],
        _ => &[Policy::AuthRequired, Policy::SessionOnly],
    };
    for &policy in policies {
        if let Err(code) = one(runs, seed, policy) {
            return code;
        }
    }
    ExitCode::SUCCESS
}

fn one(runs: u64, seed: u64, policy: Policy) -> Result<(), ExitCode> {
    let started = Instant::now();
    let result = campaign(runs, seed, policy, &mut |r| {
        eprintln!(
            "ingress fuzz ({policy:?}): {} frames, {} delivered, {:.0} s",
            r.runs,
            r.delivered,
            started.elapsed().as_secs_f64()
        );
    });
    match result {
        Ok(r) => {
            let doc = serde_json::json!({
                "policy": format!("{policy:?}"),
                "runs": r.runs,
                "seed": seed,
                "seconds": started.elapsed().as_secs_f64(),
                "delivered": r.delivered,
                "delivered_after_mutation": r.delivered_mutated,
                "raw_ip": r.raw_ip,
                "raw_ip_deliveries_failed_decapsulation": r.decap_failed_raw,
                "refused_by_test_run": r.refused,
                "outer_ipv6": r.outer_v6,
                "not_as_signed": r.not_as_signed,
                "forged_delivered": r.forged_delivered,
                "time_dependent": r.time_dependent,
                "drops": r.drops,
                "outcomes": r.outcomes.iter().map(|(k, v)| (format!("{k:?}"), serde_json::Value::from(*v))).collect::<serde_json::Map<_, _>>(),
                "kinds": r.kinds.iter().map(|(k, v)| (format!("{k:?}"), serde_json::Value::from(*v))).collect::<serde_json::Map<_, _>>(),
            });
            println!("{doc}");
            Ok(())
        }
        Err(e) => {
            eprintln!("ingress fuzz ({policy:?}) failed: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}
