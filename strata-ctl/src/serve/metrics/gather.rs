//! Gathering: everything one scrape shows, read at once into a plain value.
//!
//! A scrape reads from five places: the kernel's pinned counter maps, the
//! host-side sampling maps (queueing delay and drop reasons), the kernel's
//! run-time statistics of the data-plane programs, rtnetlink (the links'
//! root qdiscs and their drivers' counters), and the published view the
//! control loop keeps in the [`Exposition`]. [`gather`] does all of that
//! I/O and returns a [`Gathered`] value; encoding it
//! ([`super::encode::encode`]) reads nothing more, so the exposition can be
//! tested, and compared against a golden file, on values built by hand.
//!
//! A source that cannot be read is recorded as absent (`None`), never as
//! zeros: the exposition then says so (`strata_kernel_maps_readable 0`,
//! `strata_qdisc_stats_readable 0`, …) rather than showing numbers nobody
//! counted.

use std::time::Duration;

use crate::{
    dataplane::{
        sampling::{self, Samples},
        stats::{self, Snapshot},
    },
    inband::guard::GuardSnapshot,
    os::net::{InterfaceCounters, Net, QdiscStats},
    serve::{
        bitrate::{self, Bitrate},
        view::{Exposition, Published},
    },
};

/// What one scrape shows: the inputs of [`super::encode::encode`].
///
/// Every field is a value read at scrape time; `None` means the source
/// could not be read (or does not run) and its series are left out.
#[derive(Clone, Debug, Default)]
pub struct Gathered {
    /// The running build (`strata_build_info{version}`).
    pub version: String,
    /// Time since the daemon started.
    pub uptime: Duration,
    /// The control loop's published view.
    pub published: Published,
    /// The configured interface name and ifindex of each link id (the
    /// edge's links; empty on the hub).
    pub interfaces: Vec<(u8, String, u32)>,
    /// The kernel's counters from the pinned maps; `None` if unreadable.
    pub kernel: Option<Snapshot>,
    /// Root qdisc statistics by ifindex; `None` if rtnetlink failed.
    pub qdiscs: Option<Vec<(u32, QdiscStats)>>,
    /// Driver counters (`IFLA_STATS64`) by ifindex; `None` if rtnetlink
    /// failed.
    pub interface_counters: Option<Vec<(u32, InterfaceCounters)>>,
    /// Run-time statistics of the data-plane programs; `None` while the
    /// kernel does not keep them (`BPF_ENABLE_STATS` off or unsupported).
    pub programs: Option<Vec<ProgramRuns>>,
    /// The host-side sampling maps; `None` while sampling does not run or
    /// its maps cannot be read.
    pub host_queues: Option<HostQueues>,
    /// What fits within the deadline, as the bitrate socket shows it now
    /// (the published view aged by the clock at scrape time).
    pub bitrate: Option<Bitrate>,
    /// What the in-band channel and the served sockets turned away.
    pub guards: GuardSnapshot,
}

impl Gathered {
    /// The configured interface of link `id` ("" if unknown): the value of
    /// the `interface` label, stable across re-binds.
    pub fn interface(&self, id: u8) -> &str {
        self.interfaces.iter().find(|(l, ..)| *l == id).map_or("", |(_, n, _)| n.as_str())
    }
}

/// One data-plane program's cumulative run-time statistics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramRuns {
    /// The program's name in the data plane (`strata_tc_egress`, …).
    pub name: &'static str,
    /// Times it ran.
    pub runs: u64,
    /// Time it ran, in total.
    pub run_time: Duration,
}

/// What host-side sampling counted, with the names of the kernel's drop
/// reasons to label it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostQueues {
    /// The kernel's drop reasons: value and name, from its tracepoint format.
    pub reasons: Vec<(u32, String)>,
    /// Queueing delay histograms and drops, per link slot.
    pub samples: Samples,
}

/// Reads everything a scrape shows: rtnetlink through `net` (if there is a
/// connection), the pinned maps and program statistics through the kernel,
/// and the published view of `exposition`.
pub async fn gather(exposition: &Exposition, net: Option<&Net>) -> Gathered {
    let qdiscs = match net {
        Some(net) => net.root_qdiscs().await.ok(),
        None => None,
    };
    let interface_counters = match net {
        Some(net) => net
            .interfaces()
            .await
            .ok()
            .map(|found| found.into_iter().map(|i| (i.index, i.counters)).collect()),
        None => None,
    };
    Gathered { qdiscs, interface_counters, ..gather_kernel(exposition) }
}

/// Everything but rtnetlink: the pinned maps, program statistics, the
/// published view and the uptime.
fn gather_kernel(exposition: &Exposition) -> Gathered {
    let published = exposition.published();
    let kernel = stats::read_pinned(&exposition.pin_dir).ok();
    let (programs, stats_enabled) = exposition.programs.lock().map(|p| p.clone()).unwrap_or_default();
    let programs = stats_enabled.then(|| {
        if programs.is_empty() {
            return Vec::new();
        }
        aya::programs::loaded_programs()
            .flatten()
            .filter_map(|info| {
                let (name, _) = programs.iter().find(|(_, id)| *id == info.id())?;
                Some(ProgramRuns { name, runs: info.run_count(), run_time: info.run_time() })
            })
            .collect()
    });
    let reasons = exposition.sampling.lock().ok().and_then(|s| s.as_ref().ok().cloned());
    let host_queues = reasons.and_then(|reasons| {
        let samples = sampling::read(&exposition.pin_dir).ok()?;
        Some(HostQueues { reasons, samples })
    });
    let bitrate = Some(bitrate::document(&published.bitrate, std::time::SystemTime::now()));
    Gathered {
        bitrate,
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime: exposition.uptime(),
        published,
        interfaces: exposition.interfaces.clone(),
        kernel,
        qdiscs: None,
        interface_counters: None,
        programs,
        host_queues,
        guards: exposition.guards.snapshot(),
    }
}
