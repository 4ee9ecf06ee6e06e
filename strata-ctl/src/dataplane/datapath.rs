//! The kernel data plane as userspace sees it: load the embedded eBPF object,
//! pin its maps, attach its programs, write the maps the kernel reads, and
//! read the counters it keeps.
//!
//! The data plane outlives the daemon. Maps are pinned by name in the
//! instance's pin directory, and on TCX kernels (≥ 6.6) the program links
//! too, beside them (`link_egress_<if>`, `link_ingress_<if>`): a pinned link
//! stays attached when the process that made it ends, however it ends. A
//! starting daemon finds them and *adopts* the running data plane: the maps
//! are reused as they are (sequence numbers, learned peers, schedule,
//! counters), and its freshly loaded programs replace the old ones on the
//! same links in one step (`BPF_LINK_UPDATE`), so no packet meets a moment
//! without a program. Only a clean stop ([`Datapath::detach_all`],
//! [`Datapath::unpin`]) takes the data plane down.
//!
//! This is the only module that talks to aya. Everything it writes is built by
//! pure code elsewhere ([`crate::control::schedule`], [`crate::config`]).

use std::path::{Path, PathBuf};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData},
    programs::{
        LinkOrder, ProgramError, SchedClassifier, TcAttachType, TracePoint,
        links::{FdLink, PinnedLink},
        tc::{SchedClassifierLink, SchedClassifierLinkId, TcAttachOptions},
    },
};
use strata_common::{
    auth::{AuthKey, KEY_SEND, KEY_SLOTS, TrafficKeys},
    class::{ClassTable, DeadlineShares},
    maps::{
        CONFIG_AUTH_REQUIRED, Endpoint, IFNAME_LEN, LinkPace, LinkTx, LinkTx6, MAX_LINKS, SampleConfig,
        Schedule, TunnelConfig, TxSeq, names as map_names,
    },
};

pub use crate::dataplane::error::DatapathError;
use crate::{
    control::schedule::{self, Weights},
    dataplane::{
        backlog::{self, KernelBacklog},
        error::map_err,
        stats::{self, Snapshot},
    },
};

/// The eBPF object built by `build.rs`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/strata"));

/// The sampling programs and the tracepoints they attach to.
const SAMPLING_PROGRAMS: [(&str, &str, &str); 3] = [
    ("strata_host_queue_enqueue", "net", "net_dev_queue"),
    ("strata_host_queue_xmit", "net", "net_dev_start_xmit"),
    ("strata_kernel_drop", "skb", "kfree_skb"),
];

/// The two programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    /// tc egress of the tunnel device.
    TunnelEgress,
    /// tc ingress of link / public interfaces.
    LinkIngress,
}

impl Program {
    /// Symbol name in the object.
    pub const fn name(self) -> &'static str {
        match self {
            Self::TunnelEgress => "strata_tunnel_egress",
            Self::LinkIngress => "strata_link_ingress",
        }
    }
}

fn prog_err(what: impl Into<String>) -> impl FnOnce(ProgramError) -> DatapathError {
    let what = what.into();
    move |source| DatapathError::Program { what, source }
}

/// How [`Datapath::attach`] put a program in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attached {
    /// A new attachment (nothing of ours was there).
    Fresh,
    /// The program on a link an earlier daemon pinned was replaced in place.
    Replaced,
}

/// What keeps one attachment alive.
#[derive(Debug)]
enum Hold {
    /// Owned by the program (netlink tc on pre-TCX kernels, or no pin
    /// directory): detached when the program is.
    Owned(SchedClassifierLinkId),
    /// A link pinned at `path`: attached as long as the pin exists, whether
    /// or not this descriptor is open.
    Pinned { path: PathBuf, _link: FdLink },
}

/// The loaded data plane.
#[derive(Debug)]
pub struct Datapath {
    ebpf: Ebpf,
    pin_dir: Option<PathBuf>,
    attached: Vec<(Program, String, Hold)>,
    adopted: bool,
}

/// The file name of the pinned link of `program` on `interface`.
pub fn link_pin_name(program: Program, interface: &str) -> String {
    match program {
        Program::TunnelEgress => format!("link_egress_{interface}"),
        Program::LinkIngress => format!("link_ingress_{interface}"),
    }
}

/// Whether a pin file name is one of [`link_pin_name`]'s.
fn is_link_pin(name: &str) -> bool {
    name.starts_with("link_egress_") || name.starts_with("link_ingress_")
}

/// Whether a program error is the kernel saying the link lost its device
/// (`ENOLINK`): the interface it was attached to is gone.
fn severed(e: &ProgramError) -> bool {
    matches!(e, ProgramError::SyscallError(s) if s.io_error.raw_os_error() == Some(libc::ENOLINK))
}

impl Datapath {
    /// Loads the object, pinning (or reusing) its maps under `pin_dir`.
    /// Without a pin directory the maps are private to `self` (tests,
    /// benchmarks): the object declares its maps pinned by name, so they are
    /// pinned in a scratch directory that is removed right after loading.
    pub fn load(pin_dir: Option<&Path>) -> Result<Self, DatapathError> {
        let scratch;
        let dir = match pin_dir {
            Some(dir) => dir,
            None => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                // (bpffs refuses names with a dot.)
                scratch = Path::new(crate::config::PIN_ROOT)
                    .join(format!("private-{}-{nanos}", std::process::id()));
                &scratch
            }
        };
        std::fs::create_dir_all(dir).map_err(|source| DatapathError::Io {
            what: format!("creating pin directory {} (is bpffs mounted at /sys/fs/bpf?)", dir.display()),
            source,
        })?;
        let loaded = EbpfLoader::new().default_map_pin_directory(dir).load(OBJECT);
        let mut this =
            Self { ebpf: loaded?, pin_dir: Some(dir.to_path_buf()), attached: Vec::new(), adopted: false };
        if pin_dir.is_none() {
            this.unpin()?;
        }
        // Maps reused from the pins with READY set: a running data plane,
        // left by a daemon that was killed or stopped keeping it.
        let ready = this
            .array::<TunnelConfig>(map_names::CONFIG)?
            .get(&0, 0)
            .is_ok_and(|c| c.flags & strata_common::maps::CONFIG_READY != 0);
        this.adopted = ready && pin_dir.is_some();
        for program in [Program::TunnelEgress, Program::LinkIngress] {
            let prog = classifier(&mut this.ebpf, program)?;
            prog.load().map_err(prog_err(format!("verifying {}", program.name())))?;
        }
        Ok(this)
    }

    /// Starts forwarding the kernel's log lines (aya-log) to `tracing`.
    pub fn forward_logs(&mut self) {
        let logger = match aya_log::EbpfLogger::init(&mut self.ebpf) {
            Ok(logger) => logger,
            Err(e) => return tracing::debug!("no kernel log forwarding: {e}"),
        };
        // The logger is a ring buffer: wait until it is readable, then drain it.
        // SAFETY: the logger owns its ring buffer's descriptor for as long as
        // the `AsyncFd` owns the logger, and always reports the same one.
        match unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE)
        } {
            Ok(mut logger) => {
                tokio::spawn(async move {
                    while let Ok(mut guard) = logger.readable_mut().await {
                        guard.get_inner_mut().flush();
                        guard.clear_ready();
                    }
                });
            }
            Err(e) => tracing::debug!("no kernel log forwarding: {e}"),
        }
    }

    /// Whether the maps came from a running data plane (pins with READY
    /// set): the caller then keeps READY set and the kernel's state as it
    /// is, and [`Datapath::attach`] replaces programs on the pinned links.
    pub fn adopted(&self) -> bool {
        self.adopted
    }

    /// Attaches `program` to `interface`: TCX on kernels ≥ 6.6, its link
    /// pinned beside the maps (or, if an earlier daemon pinned one there,
    /// that link's program replaced in place); else a clsact qdisc.
    pub fn attach(&mut self, program: Program, interface: &str) -> Result<Attached, DatapathError> {
        let attach_type = match program {
            Program::TunnelEgress => TcAttachType::Egress,
            Program::LinkIngress => TcAttachType::Ingress,
        };
        let what = || format!("attaching {} to {interface}", program.name());
        let tcx =
            aya::util::KernelVersion::current().is_ok_and(|v| v >= aya::util::KernelVersion::new(6, 6, 0));
        let pin = self.pin_dir.as_ref().filter(|_| tcx).map(|d| d.join(link_pin_name(program, interface)));
        let prog = classifier(&mut self.ebpf, program)?;
        let Some(path) = pin else {
            if !tcx {
                // Pre-TCX kernels attach through a clsact qdisc; it may exist
                // already. (Such attachments are not links and cannot be
                // pinned: a restart there re-attaches.)
                let _ = aya::programs::tc::qdisc_add_clsact(interface);
            }
            let id = prog.attach(interface, attach_type).map_err(prog_err(what()))?;
            self.attached.push((program, interface.to_string(), Hold::Owned(id)));
            return Ok(Attached::Fresh);
        };
        if path.exists() {
            match replace_pinned(prog, &path, interface, attach_type) {
                Ok(link) => {
                    tracing::info!(pin = %path.display(), "{} on {interface}: replaced in place", program.name());
                    self.attached.push((program, interface.to_string(), Hold::Pinned { path, _link: link }));
                    return Ok(Attached::Replaced);
                }
                Err(why) => {
                    // Severed (its interface went away, perhaps came back
                    // under the same name) or not ours: a fresh attachment.
                    tracing::info!(pin = %path.display(), "pinned link not reusable ({why}): attaching afresh");
                    std::fs::remove_file(&path).map_err(|source| DatapathError::Io {
                        what: format!("removing the stale link pin {}", path.display()),
                        source,
                    })?;
                }
            }
        }
        let id = prog
            .attach_with_options(interface, attach_type, TcAttachOptions::TcxOrder(LinkOrder::default()))
            .map_err(prog_err(what()))?;
        let link = prog.take_link(id).map_err(prog_err(what()))?;
        let link = FdLink::try_from(link).map_err(|source| DatapathError::Link { what: what(), source })?;
        let pinned = link.pin(&path).map_err(|source| DatapathError::Pin {
            what: format!("pinning the link of {} at {}", program.name(), path.display()),
            source,
        })?;
        self.attached.push((program, interface.to_string(), Hold::Pinned { path, _link: pinned.into() }));
        Ok(Attached::Fresh)
    }

    /// Detaches every program this instance attached (pinned links: their
    /// pins removed). Interfaces that disappeared meanwhile took their
    /// attachments with them.
    pub fn detach_all(&mut self) {
        for (program, interface, hold) in std::mem::take(&mut self.attached) {
            match hold {
                Hold::Owned(id) => {
                    if let Ok(prog) = classifier(&mut self.ebpf, program)
                        && let Err(e) = prog.detach(id)
                    {
                        tracing::debug!("detaching {} from {interface}: {e}", program.name());
                    }
                }
                // The link goes when its last reference does: the pin here,
                // the descriptor as `_link` drops.
                Hold::Pinned { path, .. } => {
                    if let Err(e) = std::fs::remove_file(&path) {
                        tracing::debug!("unpinning {}: {e}", path.display());
                    }
                }
            }
        }
    }

    /// Lets go of the data plane without taking it down: pinned links stay
    /// attached and pinned maps stay, for the next daemon to adopt. (Owned
    /// attachments, on pre-TCX kernels, end with the process all the same.)
    pub fn release(self) {
        // Dropping closes descriptors only; the pins keep what they pin.
        drop(self);
    }

    /// Removes the pinned maps, any link pins left, and the pin directory.
    pub fn unpin(&mut self) -> Result<(), DatapathError> {
        let Some(dir) = self.pin_dir.take() else {
            return Ok(());
        };
        // Links pinned by an earlier daemon on interfaces this one no
        // longer uses would keep their programs attached.
        let links = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| is_link_pin(n));
        for name in map_names::ALL.iter().map(|n| n.to_string()).chain(links.collect::<Vec<_>>()) {
            let path = dir.join(name);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(DatapathError::Io { what: format!("unpinning {}", path.display()), source });
                }
            }
        }
        match std::fs::remove_dir(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(DatapathError::Io { what: format!("removing {}", dir.display()), source }),
        }
    }

    /// Starts host-side sampling: the tracepoint offsets, the watched
    /// interfaces (name → link id), then the three tracepoint programs.
    pub fn start_sampling(&mut self, cfg: SampleConfig, watch: &[(String, u8)]) -> Result<(), DatapathError> {
        for (name, id) in watch {
            self.watch_interface(name, *id)?;
        }
        self.array::<SampleConfig>(map_names::SAMPLE_CFG)?
            .set(0, SampleConfig { ready: 1, ..cfg }, 0)
            .map_err(map_err("writing STRATA_SAMPLE_CFG"))?;
        for (program, category, name) in SAMPLING_PROGRAMS {
            let prog: &mut TracePoint = self
                .ebpf
                .program_mut(program)
                .ok_or_else(|| DatapathError::Program {
                    what: format!("program {program} missing from the object"),
                    source: ProgramError::NotLoaded,
                })?
                .try_into()
                .map_err(prog_err(format!("program {program}")))?;
            prog.load().map_err(prog_err(format!("verifying {program}")))?;
            prog.attach(category, name)
                .map_err(prog_err(format!("attaching {program} to {category}:{name}")))?;
        }
        Ok(())
    }

    /// Host-side sampling attributes packets queued on interface `name` to
    /// link `id` (also when a link moves to a new interface; the old
    /// name's entry stays, harmless, as a renamed modem may come back).
    pub fn watch_interface(&mut self, name: &str, id: u8) -> Result<(), DatapathError> {
        let map = self.ebpf.map_mut(map_names::WATCH).ok_or_else(|| DatapathError::Map {
            what: "map STRATA_WATCH".into(),
            source: aya::maps::MapError::InvalidName { name: map_names::WATCH.into() },
        })?;
        let mut w: HashMap<&mut MapData, [u8; IFNAME_LEN], u32> =
            HashMap::try_from(map).map_err(map_err("map STRATA_WATCH"))?;
        let mut key = [0u8; IFNAME_LEN];
        let n = name.len().min(IFNAME_LEN - 1);
        key[..n].copy_from_slice(&name.as_bytes()[..n]);
        w.insert(key, u32::from(id), 0).map_err(map_err("writing STRATA_WATCH"))
    }

    /// The loaded program, for test runs and benchmarks.
    pub fn program_mut(&mut self, program: Program) -> Result<&mut SchedClassifier, DatapathError> {
        classifier(&mut self.ebpf, program)
    }

    fn array<T: aya::Pod>(&mut self, name: &str) -> Result<Array<&mut MapData, T>, DatapathError> {
        let map = self.ebpf.map_mut(name).ok_or_else(|| DatapathError::Map {
            what: format!("map {name}"),
            source: aya::maps::MapError::InvalidName { name: name.into() },
        })?;
        Array::try_from(map).map_err(map_err(format!("map {name}")))
    }

    /// Writes the tunnel-wide configuration.
    pub fn set_config(&mut self, config: TunnelConfig) -> Result<(), DatapathError> {
        self.array::<TunnelConfig>(map_names::CONFIG)?
            .set(0, config, 0)
            .map_err(map_err("writing STRATA_CONFIG"))
    }

    /// Writes the delivery-class table the egress program classifies by.
    pub fn set_classes(&mut self, table: &ClassTable) -> Result<(), DatapathError> {
        self.array::<ClassTable>(map_names::CLASSES)?
            .set(0, *table, 0)
            .map_err(map_err("writing STRATA_CLASSES"))
    }

    /// Writes each class's share of the deadline (see [`DeadlineShares`]).
    pub fn set_deadline_shares(&mut self, shares: DeadlineShares) -> Result<(), DatapathError> {
        let mut map = self.array::<u32>(map_names::CLASS_DEADLINE)?;
        for (class, share) in (0u32..).zip(shares.entries()) {
            map.set(class, share, 0).map_err(map_err("writing STRATA_CLASS_DEADLINE"))?;
        }
        Ok(())
    }

    /// Sets `flags` in the tunnel configuration, keeping the rest.
    pub fn set_config_flags(&mut self, flags: u32) -> Result<(), DatapathError> {
        let mut map = self.array::<TunnelConfig>(map_names::CONFIG)?;
        let current = map.get(&0, 0).map_err(map_err("reading STRATA_CONFIG"))?;
        map.set(0, TunnelConfig { flags: current.flags | flags, ..current }, 0)
            .map_err(map_err("writing STRATA_CONFIG"))
    }

    /// The tunnel configuration's `CONFIG_*` flags as the kernel holds them.
    pub fn config_flags(&mut self) -> Result<u32, DatapathError> {
        let map = self.array::<TunnelConfig>(map_names::CONFIG)?;
        Ok(map.get(&0, 0).map_err(map_err("reading STRATA_CONFIG"))?.flags)
    }

    /// Clears `flags` in the tunnel configuration, keeping the rest.
    pub fn clear_config_flags(&mut self, flags: u32) -> Result<(), DatapathError> {
        let mut map = self.array::<TunnelConfig>(map_names::CONFIG)?;
        let current = map.get(&0, 0).map_err(map_err("reading STRATA_CONFIG"))?;
        map.set(0, TunnelConfig { flags: current.flags & !flags, ..current }, 0)
            .map_err(map_err("writing STRATA_CONFIG"))
    }

    /// Installs the packet authentication keys of one epoch (what the
    /// handshake derived) and makes them the ones the kernel sends with.
    ///
    /// The epoch goes to slot `epoch & 1` of `STRATA_AUTH_KEYS`; the other
    /// slot keeps its keys for receiving (packets of the previous epoch
    /// still in flight verify) but stops sending, until [`Self::retire_keys`]
    /// removes it. The new slot is written first, so there is no moment
    /// without a sending key; for that moment both slots send and the
    /// kernel takes slot 0's, which the receiver holds either way.
    ///
    /// Installing keys does not make them required: see
    /// [`Self::set_auth_required`].
    pub fn install_keys(&mut self, keys: &TrafficKeys) -> Result<(), DatapathError> {
        let mut map = self.array::<AuthKey>(map_names::AUTH_KEYS)?;
        let slot = keys.slot();
        map.set(slot, keys.entry(true), 0).map_err(map_err("writing STRATA_AUTH_KEYS"))?;
        let other = slot ^ 1;
        let old = map.get(&other, 0).map_err(map_err("reading STRATA_AUTH_KEYS"))?;
        if old.flags & KEY_SEND != 0 {
            map.set(other, AuthKey { flags: old.flags & !KEY_SEND, ..old }, 0)
                .map_err(map_err("writing STRATA_AUTH_KEYS"))?;
        }
        Ok(())
    }

    /// Removes the keys of `epoch` if they are installed: packets tagged
    /// with them no longer verify (`auth_missing` while auth is required).
    /// Returns whether they were.
    pub fn retire_keys(&mut self, epoch: u32) -> Result<bool, DatapathError> {
        let mut map = self.array::<AuthKey>(map_names::AUTH_KEYS)?;
        let slot = epoch & 1;
        let old = map.get(&slot, 0).map_err(map_err("reading STRATA_AUTH_KEYS"))?;
        if !old.valid() || old.epoch != epoch {
            return Ok(false);
        }
        map.set(slot, AuthKey::default(), 0).map_err(map_err("writing STRATA_AUTH_KEYS"))?;
        Ok(true)
    }

    /// The installed key slots (for userspace to tag and check the control
    /// packets it sends and receives with the kernel's keys).
    pub fn auth_keys(&mut self) -> Result<[AuthKey; KEY_SLOTS as usize], DatapathError> {
        let map = self.array::<AuthKey>(map_names::AUTH_KEYS)?;
        let mut out = [AuthKey::default(); KEY_SLOTS as usize];
        for (slot, entry) in out.iter_mut().enumerate() {
            *entry = map.get(&(slot as u32), 0).map_err(map_err("reading STRATA_AUTH_KEYS"))?;
        }
        Ok(out)
    }

    /// Whether every received packet must carry a valid tag
    /// (`CONFIG_AUTH_REQUIRED`): on, untagged packets are dropped as
    /// `auth_missing`; off, tagged packets with a key installed for their
    /// phase are still verified.
    pub fn set_auth_required(&mut self, required: bool) -> Result<(), DatapathError> {
        if required {
            self.set_config_flags(CONFIG_AUTH_REQUIRED)
        } else {
            self.clear_config_flags(CONFIG_AUTH_REQUIRED)
        }
    }

    /// Tells the ingress program the link-layer header length of `ifindex`.
    pub fn set_interface(&mut self, ifindex: u32, l2_len: u32) -> Result<(), DatapathError> {
        let map = self.ebpf.map_mut(map_names::IFACES).ok_or_else(|| DatapathError::Map {
            what: "map STRATA_IFACES".into(),
            source: aya::maps::MapError::InvalidName { name: map_names::IFACES.into() },
        })?;
        let mut ifaces: HashMap<&mut MapData, u32, u32> =
            HashMap::try_from(map).map_err(map_err("map STRATA_IFACES"))?;
        ifaces.insert(ifindex, l2_len, 0).map_err(map_err("writing STRATA_IFACES"))
    }

    /// Writes how to send on link `id`.
    pub fn set_link(&mut self, id: u8, link: LinkTx) -> Result<(), DatapathError> {
        self.array::<LinkTx>(map_names::LINKS)?
            .set(u32::from(id), link, 0)
            .map_err(map_err(format!("writing STRATA_LINKS[{id}]")))
    }

    /// Writes the peer endpoint of link `id`.
    pub fn set_peer(&mut self, id: u8, peer: Endpoint) -> Result<(), DatapathError> {
        self.array::<Endpoint>(map_names::PEERS)?
            .set(u32::from(id), peer, 0)
            .map_err(map_err(format!("writing STRATA_PEERS[{id}]")))
    }

    /// Writes the local IPv6 address the ingress program accepts tunnel
    /// packets for (network order words; all zero: any).
    pub fn set_local6(&mut self, address: [u32; 4]) -> Result<(), DatapathError> {
        self.array::<[u32; 4]>(map_names::CONFIG6)?
            .set(0, address, 0)
            .map_err(map_err("writing STRATA_CONFIG6"))
    }

    /// Writes how link `id` sends to IPv6 peers (before a [`LinkTx`] with
    /// [`LinkTx::with_v6`] refers to it).
    pub fn set_link6(&mut self, id: u8, link: LinkTx6) -> Result<(), DatapathError> {
        self.array::<LinkTx6>(map_names::LINKS6)?
            .set(u32::from(id), link, 0)
            .map_err(map_err(format!("writing STRATA_LINKS6[{id}]")))
    }

    /// Writes the peer of link `id` at `address`, of either family: an
    /// IPv6 address goes into `STRATA_PEERS6` first, then the endpoint
    /// saying IPv6, so the kernel never reads a half-written one.
    pub fn set_peer_at(&mut self, id: u8, address: std::net::SocketAddr) -> Result<(), DatapathError> {
        let (peer, v6) = Endpoint::new(address.ip(), address.port());
        if let Some(words) = v6 {
            self.array::<[u32; 4]>(map_names::PEERS6)?
                .set(u32::from(id), words, 0)
                .map_err(map_err(format!("writing STRATA_PEERS6[{id}]")))?;
        }
        self.set_peer(id, peer)
    }

    /// Sets when the learned endpoint of link `id` was last refreshed
    /// (`bpf_ktime_get_ns`), as the ingress program does: a hub sends to it
    /// only within `PEER_EXPIRY_NS`. The daemon never writes it (only packets
    /// that passed every check refresh an endpoint); tests age one with it.
    pub fn set_peer_seen(&mut self, id: u8, seen_ns: u64) -> Result<(), DatapathError> {
        self.array::<u64>(map_names::PEER_SEEN)?
            .set(u32::from(id), seen_ns, 0)
            .map_err(map_err(format!("writing STRATA_PEER_SEEN[{id}]")))
    }

    /// Installs a schedule for `weights` without the kernel ever seeing a
    /// half-written one: write the inactive copy, then flip the index.
    pub fn set_weights(&mut self, weights: &Weights) -> Result<(), DatapathError> {
        let new = schedule::build(weights);
        let mut sched = self.array::<Schedule>(map_names::SCHED)?;
        let entry0 = sched.get(&0, 0).map_err(map_err("reading STRATA_SCHED"))?;
        // The double-buffer flip is a contract with the kernel's reader:
        // strata-common writes it once for both sides.
        for (index, value) in strata_common::schedule::flip(&entry0, &new) {
            sched.set(index, value, 0).map_err(map_err("writing STRATA_SCHED"))?;
        }
        Ok(())
    }

    /// Seeds the sender's global sequence (only for a fresh map: a reused
    /// pinned map keeps counting, so a restarted controller does not reuse
    /// numbers the peer's duplicate window still holds).
    pub fn seed_sequence(&mut self, start: u32) -> Result<(), DatapathError> {
        let mut seq = self.array::<TxSeq>(map_names::TXSEQ)?;
        let current = seq.get(&0, 0).map_err(map_err("reading STRATA_TXSEQ"))?;
        if current == TxSeq::default() {
            seq.set(0, TxSeq { global: u64::from(start), ..current }, 0)
                .map_err(map_err("writing STRATA_TXSEQ"))?;
        }
        Ok(())
    }

    /// The sender's next sequence numbers.
    pub fn tx_sequence(&mut self) -> Result<TxSeq, DatapathError> {
        self.array::<TxSeq>(map_names::TXSEQ)?.get(&0, 0).map_err(map_err("reading STRATA_TXSEQ"))
    }

    /// Packets each link took past every link's budget so far (cumulative).
    pub fn overflow(&mut self) -> Result<[u64; MAX_LINKS as usize], DatapathError> {
        let pace = self.array::<LinkPace>(map_names::PACE)?;
        let mut out = [0u64; MAX_LINKS as usize];
        for (i, o) in out.iter_mut().enumerate() {
            *o = pace.get(&(i as u32), 0).map_err(map_err("reading STRATA_PACE"))?.overflow;
        }
        Ok(out)
    }

    /// Each link's backlog as the kernel's scheduler prices it now
    /// (diagnostics; see [`backlog`]).
    pub fn kernel_backlogs(&mut self) -> Result<[Option<KernelBacklog>; MAX_LINKS as usize], DatapathError> {
        let now_ns = stats::monotonic_ns();
        let next = self.tx_sequence()?.link;
        let mut out = [None; MAX_LINKS as usize];
        for (id, o) in out.iter_mut().enumerate() {
            let key = id as u32;
            let tx = self
                .array::<LinkTx>(map_names::LINKS)?
                .get(&key, 0)
                .map_err(map_err("reading STRATA_LINKS"))?;
            let pace = self
                .array::<LinkPace>(map_names::PACE)?
                .get(&key, 0)
                .map_err(map_err("reading STRATA_PACE"))?;
            let sent = self.array::<u64>(map_names::SENT)?;
            *o = backlog::kernel_backlog(
                &tx,
                &pace,
                next[id] as u32,
                |seq| sent.get(&backlog::sent_index(key, seq), 0).ok(),
                now_ns,
            );
        }
        Ok(out)
    }

    /// The kernel's id of each loaded program, by its name.
    /// (Sampling programs count once started.)
    pub fn program_ids(&self) -> Vec<(&'static str, u32)> {
        [Program::TunnelEgress.name(), Program::LinkIngress.name()]
            .into_iter()
            .chain(SAMPLING_PROGRAMS.iter().map(|(name, ..)| *name))
            .filter_map(|name| Some((name, self.ebpf.program(name)?.info().ok()?.id())))
            .collect()
    }

    /// Everything the kernel counts, summed over CPUs.
    pub fn snapshot(&self) -> Result<Snapshot, DatapathError> {
        stats::read(&|name| self.ebpf.map(name))
    }
}

/// Replaces the program on the link pinned at `path` with `prog`, if that
/// link is still attached to `interface`; returns the link, or why not.
fn replace_pinned(
    prog: &mut SchedClassifier,
    path: &Path,
    interface: &str,
    attach_type: TcAttachType,
) -> Result<FdLink, String> {
    let pinned = PinnedLink::from_pin(path).map_err(|e| e.to_string())?;
    let link = FdLink::from(pinned);
    let old_program = link.info().map_err(|e| e.to_string())?.program_id();
    // A device renamed away keeps its link; the name now belongs to another
    // device, which that link does not reach.
    let (_, on_interface) = SchedClassifier::query_tcx(interface, attach_type).map_err(|e| e.to_string())?;
    if !on_interface.iter().any(|p| p.id() == old_program) {
        return Err(format!("its program is not attached to {interface}"));
    }
    let link = SchedClassifierLink::try_from(link).map_err(|e| e.to_string())?;
    let id = prog
        .attach_to_link(link)
        .map_err(|e| if severed(&e) { format!("severed from its interface ({e})") } else { e.to_string() })?;
    let link = prog.take_link(id).map_err(|e| e.to_string())?;
    FdLink::try_from(link).map_err(|e| e.to_string())
}

fn classifier(ebpf: &mut Ebpf, program: Program) -> Result<&mut SchedClassifier, DatapathError> {
    let prog = ebpf.program_mut(program.name()).ok_or_else(|| DatapathError::Program {
        what: format!("program {} missing from the object", program.name()),
        source: ProgramError::NotLoaded,
    })?;
    prog.try_into().map_err(prog_err(format!("program {}", program.name())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_pins_are_named_by_program_and_interface_and_recognised() {
        assert_eq!(link_pin_name(Program::TunnelEgress, "strata0"), "link_egress_strata0");
        assert_eq!(link_pin_name(Program::LinkIngress, "wwan1"), "link_ingress_wwan1");
        assert!(is_link_pin(&link_pin_name(Program::LinkIngress, "lnk0")));
        // Map pins are never taken for link pins (they are removed by name).
        assert!(map_names::ALL.iter().all(|m| !is_link_pin(m)));
    }
}
