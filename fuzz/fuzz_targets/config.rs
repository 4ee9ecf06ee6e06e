//! A configuration file, TOML text to validated configuration
//! (`Config::parse`), and what a valid one is asked afterwards (notes,
//! weights, the instance name): no input panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_ctl::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(config) = Config::parse(text, "fuzz.toml") {
        let _ = config.notes();
        let _ = config.weights();
        let _ = config.name();
        let _ = config.pin_dir();
        let _ = config.kernel_sampling();
        if let Some(peer) = &config.peer {
            let _ = peer.families();
        }
        let _ = config.control.thresholds();
        let _ = config.control.scoring();
    }
});
