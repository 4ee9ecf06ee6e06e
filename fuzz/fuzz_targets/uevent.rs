//! A kernel uevent message as the daemon's uevent listener parses it
//! (`uevent::parse`; any process in the network namespace can send to
//! the netlink group on some kernels): no input panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_ctl::os::uevent::parse;

fuzz_target!(|data: &[u8]| {
    let _ = parse(data);
});
