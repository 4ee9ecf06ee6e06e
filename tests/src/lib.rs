//! The Strata lab: a race car, its carriers and a cloud hub as Linux network
//! namespaces on one machine.
//!
//! ```text
//!  P-edge                P-car{i}                    P-inet              P-hub
//!  lnk{i} 100.64.{i+1}.2 ─ cdown 100.64.{i+1}.1
//!                          cup 198.18.{i+1}.2 (NAT) ─ car{i} 198.18.{i+1}.1
//!                                                     hub 198.19.0.1 ─── wan0 198.19.0.2
//! ```
//!
//! Each carrier masquerades the edge behind its own public address, like a
//! cellular network's carrier-grade NAT, so the hub sees every link of the
//! car from a different address and must learn them.
//!
//! A carrier may be IPv6-only ([`CarrierFamily::Ipv6`]), as many cellular
//! networks are: the edge's interface gets `2001:db8:{i+1}::2/64` and no
//! IPv4 address, the carrier routes that /64 unmasqueraded (a real one hands
//! out a public prefix), and the internet and the hub get IPv6 addresses
//! too (`2001:db8:ff::2` on `wan0`); the hub then listens on both families. The edge has no default
//! route and no route to the hub: Strata's data path must not depend on the
//! edge's routing table. Delay, loss and capacity emulation come later; the
//! carriers forward plainly for now.
//!
//! Every namespace name starts with a prefix unique to one lab (see
//! [`Lab::unique_prefix`]), so tests run in parallel, and a [`Lab`] removes its
//! namespaces when dropped, so a failing test cleans up too. A lab holds an
//! exclusive lock on `/run/strata-lab/<prefix>.lock` for its lifetime, so
//! cleaning up after labs whose process died ([`Lab::in_use`]) never removes
//! the namespaces of a lab another process on the machine is running.

pub mod attacker;
pub mod clients;
pub mod emulator;
pub mod interrupt;
pub mod modem_double;
pub mod scenario;
pub mod strata;
pub mod traffic;

use std::{
    ffi::OsStr,
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::AsFd as _,
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context as _, bail};

/// Prefix of every namespace the lab's unique prefixes create.
pub const UNIQUE_PREFIX_START: &str = "st";

/// What a lab carrier speaks towards the edge and the internet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CarrierFamily {
    /// IPv4 behind carrier-grade NAT (the default).
    #[default]
    Ipv4,
    /// IPv6 only, a routed public /64, no NAT.
    Ipv6,
}

/// A running lab topology.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    links: usize,
    families: Vec<CarrierFamily>,
    emulated: bool,
    namespaces: Vec<String>,
    torn_down: bool,
    /// Held (flock, exclusive) while the lab exists; the kernel releases it
    /// when the process dies, however it dies.
    owner: OwnerLock,
}

impl Lab {
    /// Name of the hub's public interface.
    pub const HUB_IFNAME: &'static str = "wan0";

    /// A prefix no other lab on this machine uses: `st` and six hex digits.
    pub fn unique_prefix() -> String {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let mix = std::process::id().wrapping_mul(2_654_435_761) ^ nanos ^ n.wrapping_mul(40_503);
        format!("{UNIQUE_PREFIX_START}{:06x}", mix & 0xff_ffff)
    }

    /// Creates the topology with `links` carriers (1..=8); on failure removes
    /// whatever it had created.
    pub fn up(prefix: &str, links: usize) -> anyhow::Result<Self> {
        Self::create(prefix, &vec![CarrierFamily::Ipv4; links], false)
    }

    /// Like [`Lab::up`], with an "air" namespace in each link between the edge
    /// and its carrier: interfaces `edge` and `car`, no addresses, for an
    /// [`emulator::bridge::EmulatedLink`] to bridge. Until one runs, the link
    /// carries nothing.
    pub fn up_emulated(prefix: &str, links: usize) -> anyhow::Result<Self> {
        Self::create(prefix, &vec![CarrierFamily::Ipv4; links], true)
    }

    /// [`Lab::up_emulated`] with one carrier per entry of `families`.
    pub fn up_emulated_with(prefix: &str, families: &[CarrierFamily]) -> anyhow::Result<Self> {
        Self::create(prefix, families, true)
    }

    fn create(prefix: &str, families: &[CarrierFamily], emulated: bool) -> anyhow::Result<Self> {
        let links = families.len();
        if !(1..=8).contains(&links) {
            bail!("a lab has 1 to 8 links, not {links}");
        }
        if prefix.is_empty() || prefix.len() > 10 || !prefix.chars().all(|c| c.is_ascii_alphanumeric()) {
            bail!("lab prefix {prefix:?} must be 1-10 ASCII letters or digits");
        }
        let owner = OwnerLock::take(prefix)?;
        let mut lab = Self {
            prefix: prefix.into(),
            links,
            families: families.to_vec(),
            emulated,
            namespaces: Vec::new(),
            torn_down: false,
            owner,
        };
        // On error `lab` is dropped here, which removes what was created.
        lab.build()?;
        Ok(lab)
    }

    fn build(&mut self) -> anyhow::Result<()> {
        let mut all = vec![self.edge_ns(), self.inet_ns(), self.hub_ns()];
        all.extend((0..self.links).map(|i| self.carrier_ns(i)));
        if self.emulated {
            all.extend((0..self.links).map(|i| self.air_ns(i)));
        }
        for ns in all {
            ip(&["netns", "add", &ns])?;
            self.namespaces.push(ns.clone());
            ip(&["-n", &ns, "link", "set", "dev", "lo", "up"])?;
            sysctl(&ns, "net.ipv4.conf.all.rp_filter", "0")?;
            sysctl(&ns, "net.ipv4.conf.default.rp_filter", "0")?;
        }
        let (edge, inet, hub) = (self.edge_ns(), self.inet_ns(), self.hub_ns());
        // A new lease in the same subnet is added before the old one is
        // removed; without promotion, removing the old (primary) address
        // would take the new (secondary) one with it.
        sysctl(&edge, "net.ipv4.conf.all.promote_secondaries", "1")?;
        sysctl(&inet, "net.ipv4.ip_forward", "1")?;
        let any_v6 = self.families.contains(&CarrierFamily::Ipv6);
        if any_v6 {
            sysctl(&inet, "net.ipv6.conf.all.forwarding", "1")?;
        }
        for i in 0..self.links {
            if self.families[i] == CarrierFamily::Ipv6 {
                self.build_v6_carrier(i)?;
                continue;
            }
            let car = self.carrier_ns(i);
            let link = Self::link_ifname(i);
            let edge_addr = format!("{}/24", Self::link_addr(i));
            let car_addr = format!("{}/24", Self::link_gateway(i));
            if self.emulated {
                let air = self.air_ns(i);
                // The air namespace only bridges frames: no addresses, no IPv6 chatter of its own.
                sysctl(&air, "net.ipv6.conf.all.disable_ipv6", "1")?;
                sysctl(&air, "net.ipv6.conf.default.disable_ipv6", "1")?;
                veth_with_mac(&edge, &link, Some(&Self::link_mac(i)), Some(&edge_addr), &air, "edge", None)?;
                veth(&air, "car", None, &car, "cdown", Some(&car_addr))?;
            } else {
                veth_with_mac(
                    &edge,
                    &link,
                    Some(&Self::link_mac(i)),
                    Some(&edge_addr),
                    &car,
                    "cdown",
                    Some(&car_addr),
                )?;
            }
            nft(&car, &lease_ruleset(Self::link_addr(i), false))?;
            let public = format!("{}/24", Self::carrier_public_addr(i));
            let upstream = format!("198.18.{}.1/24", i + 1);
            veth(&car, "cup", Some(&public), &inet, &format!("car{i}"), Some(&upstream))?;
            sysctl(&car, "net.ipv4.ip_forward", "1")?;
            ip(&["-n", &car, "route", "add", "default", "via", &format!("198.18.{}.1", i + 1)])?;
            nft(
                &car,
                "table ip nat {\n chain postrouting {\n  type nat hook postrouting priority srcnat;\n  oifname \"cup\" masquerade\n }\n}\n",
            )?;
        }
        let hub_addr = format!("{}/24", Self::hub_addr());
        veth(&inet, "hub", Some("198.19.0.1/24"), &hub, Self::HUB_IFNAME, Some(&hub_addr))?;
        ip(&["-n", &hub, "route", "add", "default", "via", "198.19.0.1"])?;
        if any_v6 {
            // The hub listens on both families: an IPv6 address beside its IPv4 one.
            ip(&["-n", &inet, "addr", "add", "2001:db8:ff::1/64", "dev", "hub", "nodad"])?;
            ip(&[
                "-n",
                &hub,
                "addr",
                "add",
                &format!("{}/64", Self::hub_addr6()),
                "dev",
                Self::HUB_IFNAME,
                "nodad",
            ])?;
            ip(&["-n", &hub, "-6", "route", "add", "default", "via", "2001:db8:ff::1"])?;
        }
        Ok(())
    }

    /// Carrier `i` on IPv6 only: the edge's interface and the carrier's side
    /// of it on `2001:db8:{i+1}::/64`, the carrier's uplink on
    /// `2001:db8:{i+1}0::/64`, and the internet routing the edge's /64 to the
    /// carrier. No IPv4 anywhere on the link, no NAT. Addresses skip
    /// duplicate address detection (`nodad`): the lab's are unique, and a
    /// tentative address cannot be bound for a second.
    fn build_v6_carrier(&self, i: usize) -> anyhow::Result<()> {
        let (edge, inet, car) = (self.edge_ns(), self.inet_ns(), self.carrier_ns(i));
        let link = Self::link_ifname(i);
        let n = i + 1;
        if self.emulated {
            let air = self.air_ns(i);
            sysctl(&air, "net.ipv6.conf.all.disable_ipv6", "1")?;
            sysctl(&air, "net.ipv6.conf.default.disable_ipv6", "1")?;
            veth_with_mac(&edge, &link, Some(&Self::link_mac(i)), None, &air, "edge", None)?;
            veth(&air, "car", None, &car, "cdown", None)?;
        } else {
            veth_with_mac(&edge, &link, Some(&Self::link_mac(i)), None, &car, "cdown", None)?;
        }
        ip(&["-n", &edge, "addr", "add", &format!("{}/64", Self::link_addr6(i)), "dev", &link, "nodad"])?;
        ip(&["-n", &car, "addr", "add", &format!("{}/64", Self::link_gateway6(i)), "dev", "cdown", "nodad"])?;
        veth(&car, "cup", None, &inet, &format!("car{i}"), None)?;
        ip(&["-n", &car, "addr", "add", &format!("2001:db8:{n}0::2/64"), "dev", "cup", "nodad"])?;
        ip(&[
            "-n",
            &inet,
            "addr",
            "add",
            &format!("2001:db8:{n}0::1/64"),
            "dev",
            &format!("car{i}"),
            "nodad",
        ])?;
        sysctl(&car, "net.ipv6.conf.all.forwarding", "1")?;
        ip(&["-n", &car, "-6", "route", "add", "default", "via", &format!("2001:db8:{n}0::1")])?;
        ip(&[
            "-n",
            &inet,
            "-6",
            "route",
            "add",
            &format!("2001:db8:{n}::/64"),
            "via",
            &format!("2001:db8:{n}0::2"),
        ])?;
        Ok(())
    }

    /// The carrier family of link `i`.
    pub fn family(&self, i: usize) -> CarrierFamily {
        self.families[i]
    }

    /// The edge's address on link `i` if its carrier is IPv6-only.
    pub fn link_addr6(i: usize) -> Ipv6Addr {
        Ipv6Addr::new(0x2001, 0xdb8, i as u16 + 1, 0, 0, 0, 0, 2)
    }

    /// Carrier `i`'s IPv6 address towards the edge (the link's next hop).
    pub fn link_gateway6(i: usize) -> Ipv6Addr {
        Ipv6Addr::new(0x2001, 0xdb8, i as u16 + 1, 0, 0, 0, 0, 1)
    }

    /// The hub's IPv6 address (labs with an IPv6 carrier).
    pub fn hub_addr6() -> Ipv6Addr {
        Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 2)
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Number of links.
    pub fn links(&self) -> usize {
        self.links
    }

    /// The car.
    pub fn edge_ns(&self) -> String {
        format!("{}-edge", self.prefix)
    }

    /// The cloud hub.
    pub fn hub_ns(&self) -> String {
        format!("{}-hub", self.prefix)
    }

    /// Carrier `i`.
    pub fn carrier_ns(&self, i: usize) -> String {
        format!("{}-car{i}", self.prefix)
    }

    /// The air between the edge's link `i` and its carrier (emulated labs).
    pub fn air_ns(&self, i: usize) -> String {
        format!("{}-air{i}", self.prefix)
    }

    /// Whether the links run through air namespaces.
    pub fn emulated(&self) -> bool {
        self.emulated
    }

    /// The internet between carriers and hub.
    pub fn inet_ns(&self) -> String {
        format!("{}-inet", self.prefix)
    }

    /// The edge's interface of link `i`.
    pub fn link_ifname(i: usize) -> String {
        format!("lnk{i}")
    }

    /// The edge's address on link `i`.
    pub fn link_addr(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(100, 64, i as u8 + 1, 2)
    }

    /// The edge's address on link `i` after an address change.
    pub fn changed_link_addr(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(100, 64, i as u8 + 1, 3)
    }

    /// The hardware address of the edge's interface of link `i`, as a
    /// modem's firmware gives one (`cdc_ether`, `rndis_host`): it comes back
    /// with the interface after a USB re-attach, so it identifies the link.
    pub fn link_mac(i: usize) -> String {
        format!("02:53:54:00:00:{:02x}", i + 1)
    }

    /// Carrier `i`'s address towards the edge (the link's next hop).
    pub fn link_gateway(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(100, 64, i as u8 + 1, 1)
    }

    /// Carrier `i`'s public address (what the hub sees after NAT).
    pub fn carrier_public_addr(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, i as u8 + 1, 2)
    }

    /// The hub's public address.
    pub fn hub_addr() -> Ipv4Addr {
        Ipv4Addr::new(198, 19, 0, 2)
    }

    /// USB-style detach of the edge's interface `ifname` in the lab `prefix`:
    /// it disappears (the veth pair is deleted, so an emulated link's air side
    /// goes too; its bridge waits for it to return).
    pub fn detach_link(prefix: &str, ifname: &str) -> anyhow::Result<()> {
        ip(&["-n", &format!("{prefix}-edge"), "link", "del", "dev", ifname])
    }

    /// Re-attach after [`Lab::detach_link`]: link `i`'s interface comes back
    /// as `new_name`, with the same address (as a modem re-enumerating on the
    /// USB bus and getting its lease again). Emulated labs only.
    pub fn reattach_link(prefix: &str, i: usize, new_name: &str) -> anyhow::Result<()> {
        let edge = format!("{prefix}-edge");
        let air = format!("{prefix}-air{i}");
        let addr = format!("{}/24", Self::link_addr(i));
        veth_with_mac(&edge, new_name, Some(&Self::link_mac(i)), Some(&addr), &air, "edge", None)
    }

    /// Takes link `i`'s carrier away from the edge (`up` false) or gives it
    /// back: the far end of the edge's interface goes down, so the edge's
    /// interface stays up but reports NO-CARRIER, as a modem whose bearer
    /// dropped.
    pub fn set_carrier(prefix: &str, i: usize, up: bool) -> anyhow::Result<()> {
        let state = if up { "up" } else { "down" };
        let air = format!("{prefix}-air{i}");
        if list_namespaces()?.contains(&air) {
            ip(&["-n", &air, "link", "set", "dev", "edge", state])
        } else {
            ip(&["-n", &format!("{prefix}-car{i}"), "link", "set", "dev", "cdown", state])
        }
    }

    /// Carrier `i` routes only `address` from the edge from now on: the
    /// lease moved (a cellular network forwards only the address it
    /// assigned, so packets from an old lease go nowhere).
    pub fn lease(prefix: &str, i: usize, address: Ipv4Addr) -> anyhow::Result<()> {
        nft(&format!("{prefix}-car{i}"), &lease_ruleset(address, true))
    }

    /// Leaves the namespaces in place when `self` goes away (`xtask lab up`);
    /// remove them later with [`Lab::down_prefix`].
    pub fn persist(mut self) {
        self.torn_down = true;
        self.owner.release();
    }

    /// Removes every namespace of this lab.
    pub fn down(mut self) -> anyhow::Result<()> {
        self.torn_down = true;
        let removed = remove_namespaces(&self.namespaces);
        self.owner.release();
        removed
    }

    /// Whether a live process holds the lab `prefix` (its lock is taken).
    /// Labs whose process died — killed, or a test binary that aborted —
    /// are not in use, and [`Lab::down_prefix`] may remove them.
    pub fn in_use(prefix: &str) -> bool {
        let Ok(file) = std::fs::File::open(OwnerLock::path(prefix)) else { return false };
        matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
    }

    /// Removes every namespace named `<prefix>-…` (for `xtask lab down` and
    /// for labs whose process died).
    pub fn down_prefix(prefix: &str) -> anyhow::Result<()> {
        let wanted = format!("{prefix}-");
        let names: Vec<String> = list_namespaces()?.into_iter().filter(|n| n.starts_with(&wanted)).collect();
        remove_namespaces(&names)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.torn_down {
            let _ = remove_namespaces(&self.namespaces);
            self.owner.release();
        }
    }
}

/// The lock file that says a lab's namespaces belong to a live process.
#[derive(Debug)]
struct OwnerLock {
    path: std::path::PathBuf,
    file: Option<std::fs::File>,
}

impl OwnerLock {
    const DIR: &'static str = "/run/strata-lab";

    fn path(prefix: &str) -> std::path::PathBuf {
        std::path::Path::new(Self::DIR).join(format!("{prefix}.lock"))
    }

    fn take(prefix: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(Self::DIR).with_context(|| format!("creating {}", Self::DIR))?;
        let path = Self::path(prefix);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { path, file: Some(file) }),
            Err(std::fs::TryLockError::WouldBlock) => {
                bail!("lab {prefix} is in use by another process ({} is locked)", path.display())
            }
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
    }

    /// Removes the file, then unlocks (closing it): a cleaner that opened the
    /// file before the removal sees it locked or, after, finds no file.
    fn release(&mut self) {
        if let Some(file) = self.file.take() {
            let _ = std::fs::remove_file(&self.path);
            drop(file);
        }
    }
}

/// Names of all network namespaces.
pub fn list_namespaces() -> anyhow::Result<Vec<String>> {
    let out = Command::new("ip").args(["netns", "list"]).output().context("running ip netns list")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect())
}

fn remove_namespaces(names: &[String]) -> anyhow::Result<()> {
    let existing = list_namespaces()?;
    let mut failed = Vec::new();
    for ns in names.iter().filter(|n| existing.contains(n)) {
        if let Err(e) = ip(&["netns", "del", ns]) {
            failed.push(format!("{ns}: {e}"));
        }
    }
    if failed.is_empty() { Ok(()) } else { bail!("could not remove {}", failed.join("; ")) }
}

/// Runs `ip ARGS`, failing with its stderr.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    run(Command::new("ip").args(args), &format!("ip {}", args.join(" ")))
}

fn sysctl(ns: &str, key: &str, value: &str) -> anyhow::Result<()> {
    let setting = format!("{key}={value}");
    run(
        Command::new("ip").args(["netns", "exec", ns, "sysctl", "-q", "-w", &setting]),
        &format!("sysctl {setting} in {ns}"),
    )
}

fn nft(ns: &str, ruleset: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running nft (install nftables: cargo xtask setup)")?;
    child.stdin.take().context("nft stdin")?.write_all(ruleset.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("nft in {ns} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// The carrier's lease check: only `address` may send from the edge side
/// (`replace`: the table exists and its lease moves).
fn lease_ruleset(address: Ipv4Addr, replace: bool) -> String {
    let flush = if replace { "flush set ip lease edge\n" } else { "" };
    let table = if replace {
        String::new()
    } else {
        "table ip lease {\n set edge { type ipv4_addr; }\n chain forward {\n  type filter hook forward priority filter;\n  iifname \"cdown\" ip saddr != @edge counter drop\n }\n}\n".to_string()
    };
    format!("{table}{flush}add element ip lease edge {{ {address} }}\n")
}

/// A veth pair between two namespaces, addressed (where given) and up.
fn veth(
    ns_a: &str,
    if_a: &str,
    addr_a: Option<&str>,
    ns_b: &str,
    if_b: &str,
    addr_b: Option<&str>,
) -> anyhow::Result<()> {
    veth_with_mac(ns_a, if_a, None, addr_a, ns_b, if_b, addr_b)
}

/// [`veth`], with `if_a`'s hardware address set at creation (the kernel
/// then marks it as set, not random: `addr_assign_type` 3).
fn veth_with_mac(
    ns_a: &str,
    if_a: &str,
    mac_a: Option<&str>,
    addr_a: Option<&str>,
    ns_b: &str,
    if_b: &str,
    addr_b: Option<&str>,
) -> anyhow::Result<()> {
    // Created in ns_a directly: names are per namespace, so "cup" in two
    // carriers never collide, and nothing appears in the host namespace.
    let mut args = vec!["-n", ns_a, "link", "add", if_a];
    if let Some(mac) = mac_a {
        args.extend(["address", mac]);
    }
    args.extend(["type", "veth", "peer", "name", if_b, "netns", ns_b]);
    ip(&args)?;
    for (ns, ifname, addr) in [(ns_a, if_a, addr_a), (ns_b, if_b, addr_b)] {
        if let Some(addr) = addr {
            ip(&["-n", ns, "addr", "add", addr, "dev", ifname])?;
        }
    }
    ip(&["-n", ns_a, "link", "set", "dev", if_a, "up"])?;
    ip(&["-n", ns_b, "link", "set", "dev", if_b, "up"])?;
    Ok(())
}

fn run(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("{what}: cannot run"))?;
    if !out.status.success() {
        bail!("{what}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Fails the calling test unless it runs as root. Tests that need
/// namespaces or BPF fail rather than skip: CI runs them as root, and a skip
/// would hide that they never ran.
pub fn require_root(why: &str) {
    assert!(nix::unistd::geteuid().is_root(), "{why}: run as root (`cargo xtask test`)");
}

/// Runs `f` on a thread that has entered namespace `ns` (network namespace
/// only), so sockets it opens live there. Threads `f` spawns inherit the
/// namespace. A panic in `f` becomes an error.
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let path = format!("/run/netns/{ns}");
    let handle = std::thread::spawn(move || -> anyhow::Result<T> {
        let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("entering {path}"))?;
        f()
    });
    handle.join().map_err(|_| anyhow::anyhow!("the thread in {ns} panicked"))?
}

/// A command that runs `program` in namespace `ns` with only the network
/// namespace switched (`nsenter --net`). `ip netns exec` would also remount
/// /sys, hiding the host's /sys/fs/bpf where Strata pins its maps.
pub fn netns_command(ns: &str, program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{ns}")).arg("--").arg(program);
    cmd
}
