//! The ingress program fed generated and mutated packets through
//! `BPF_PROG_TEST_RUN`, each verdict checked against an independent oracle.
//!
//! Valid tunnel frames (outer IPv4 or IPv6, with an Ethernet header or on a
//! raw-IP link) are built with the testbed's field-by-field builders and then
//! mutated: bit flips, truncations, appended bytes, lies in every length field,
//! random Strata headers and wholly random frames. For each frame the
//! [`expect`] oracle — written from docs/WIRE.md, "What a receiver does", not
//! from the program — says what a receiver must do with it, and the run
//! fails on the first disagreement:
//!
//! * nothing that is not a well-formed data packet of the session, new to the
//!   duplicate window, is ever redirected to the tunnel (the security
//!   property);
//! * traffic that is not Strata's passes (`TC_ACT_OK`), so the program is a
//!   good neighbour to whatever else is attached;
//! * a test run never errors, and no verdict other than OK, SHOT or REDIRECT
//!   comes back;
//! * a delivered packet comes out as exactly the inner packet.
//!
//! When packets carry an authentication tag, [`Policy::AuthRequired`] makes
//! the oracle reject every generated data packet (the generator holds no
//! key), so the same campaign then asserts that none is delivered.

use std::{collections::BTreeMap, net::Ipv4Addr};

use strata_common::{
    drop::DropReason,
    maps::{MAX_LINKS, REPLAY_WINDOW as DEDUP_WINDOW},
};

use super::{
    CARRIER6, HUB, HUB6, LO, PORT, SESSION, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, eth, hub_dual, ipv4,
    ipv6, run, udp, udp6,
};
use crate::dataplane::datapath::{Datapath, DatapathError, Program};

/// What the oracle requires of the program for one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Expected {
    /// Not Strata's: passed on untouched (`TC_ACT_OK`).
    Foreign,
    /// Addressed to Strata but malformed, of another session, or a
    /// duplicate: dropped (`TC_ACT_SHOT`).
    Dropped,
    /// A valid probe, reply, feedback or control message: up the stack to
    /// the controller's socket (`TC_ACT_OK`).
    Control,
    /// A valid data packet of the session, new to the duplicate window:
    /// decapsulated and redirected to the tunnel.
    Delivered,
}

/// Which data packets may be delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Today's receiver: a well-formed header of the right session suffices.
    SessionOnly,
    /// Once every packet carries an authentication tag: the generator forges
    /// none that verifies, so no generated data packet may be delivered.
    AuthRequired,
}

/// How a frame was made (for the report: every kind must have run).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A valid data packet.
    Valid,
    /// A valid packet of another type (probe, reply, feedback, control).
    ValidControl,
    /// Random bits flipped.
    BitFlips,
    /// Cut short.
    Truncated,
    /// Random bytes appended.
    Extended,
    /// One length field (IPv4 total, IPv6 payload, UDP, header words, inner) set to a lie.
    LengthLie,
    /// A random Strata header.
    RandomHeader,
    /// A random session id on an otherwise valid packet.
    WrongSession,
    /// A replay of a frame sent earlier.
    Replay,
    /// Random bytes.
    Random,
}

/// Counts of one campaign.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Frames run.
    pub runs: u64,
    /// Frames per [`Expected`] outcome.
    pub outcomes: BTreeMap<Expected, u64>,
    /// Frames per generator [`Kind`].
    pub kinds: BTreeMap<Kind, u64>,
    /// Frames delivered to the tunnel.
    pub delivered: u64,
    /// Delivered frames that were mutated (a mutation that happened to leave
    /// a valid packet, e.g. a flipped sequence bit).
    pub delivered_mutated: u64,
    /// Frames run without an Ethernet header (raw-IP link).
    pub raw_ip: u64,
    /// Frames with an outer IPv6 header.
    pub outer_v6: u64,
    /// Valid data frames on a raw-IP link that ended as decapsulation
    /// failures (see [`check`]).
    pub decap_failed_raw: u64,
    /// Frames not run: `BPF_PROG_TEST_RUN` refuses an IPv4 or IPv6
    /// EtherType shorter than its IP header (see [`refused_by_test_run`]).
    pub refused: u64,
}

/// Why a campaign stopped.
#[derive(Debug, thiserror::Error)]
pub enum FuzzError {
    /// Loading or configuring the data plane, or a test run, failed.
    #[error(transparent)]
    Datapath(#[from] Box<DatapathError>),
    /// A test run failed: the kernel refused the frame or the program erred.
    #[error("frame {index} ({kind:?}, {len} bytes): {source}")]
    Run {
        /// Which frame.
        index: u64,
        /// How it was made.
        kind: Kind,
        /// Its length.
        len: usize,
        /// The failure.
        source: Box<DatapathError>,
    },
    /// The program disagreed with the oracle.
    #[error(
        "frame {index} ({kind:?}, raw IP {raw}): expected {expected:?}, program returned {verdict}; frame {hex}"
    )]
    Disagree {
        /// Which frame.
        index: u64,
        /// How it was made.
        kind: Kind,
        /// Without Ethernet.
        raw: bool,
        /// The oracle's verdict.
        expected: Expected,
        /// The program's.
        verdict: u32,
        /// The frame, hex.
        hex: String,
    },
    /// A delivered packet did not come out as its inner packet.
    #[error("frame {index}: delivered bytes differ from the inner packet")]
    WrongBytes {
        /// Which frame.
        index: u64,
    },
}

/// A small deterministic generator (xorshift64*): a failing seed replays.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded; a zero seed is moved off zero (xorshift's fixed point).
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n > 0`; 0 for `n == 0`).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next_u64() % n as u64) as usize }
    }

    fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// The shortest frame `BPF_PROG_TEST_RUN` takes for a tc program: it
/// refuses anything not longer than an Ethernet header (EINVAL), and a real
/// device never hands tc a shorter one either.
pub const MIN_FRAME: usize = 15;

/// One generated frame, where its parts are, and how it was made.
#[derive(Clone, Debug)]
pub struct Frame {
    /// The bytes handed to the program.
    pub bytes: Vec<u8>,
    /// Whether it starts with the IP header (raw-IP link) rather than Ethernet.
    pub raw: bool,
    /// How it was made.
    pub kind: Kind,
}

/// Where the length fields lie in a frame built by [`valid_frame`].
struct Layout {
    l3: usize,
    v6: bool,
    strata: usize,
    inner: usize,
}

/// A valid frame: data (`packet_type` 0) or a control type, outer IPv4 or
/// IPv6, `ext` extension words, an inner IPv4 or IPv6 packet of `len` bytes.
fn valid_frame(rng: &mut Rng, packet_type: u8, global: u32, raw: bool) -> (Vec<u8>, Layout) {
    let v6 = rng.chance(2);
    let ext = if rng.chance(4) { rng.below(11) } else { 0 };
    let link = rng.below(MAX_LINKS as usize) as u8;
    let mut header = super::strata(
        packet_type,
        rng.byte() & 0x1f,
        link,
        5 + ext as u8,
        SESSION,
        global,
        rng.next_u64() as u32,
    );
    header.extend(rng.bytes(ext * 4));
    let inner_len = rng.below(200);
    let inner = if packet_type != 0 {
        rng.bytes(inner_len)
    } else if rng.chance(2) {
        super::inner_v4(rng.byte(), inner_len)
    } else {
        super::inner_v6(inner_len)
    };
    let mut body = header.clone();
    body.extend(&inner);
    let sport = rng.next_u64() as u16;
    let ip = if v6 {
        ipv6(CARRIER6, HUB6, 0, 17, &udp6(CARRIER6, HUB6, sport, PORT, &body))
    } else {
        ipv4(Ipv4Addr::new(198, 18, 2, 2), HUB, 0, 0x4000, 17, &udp(sport, PORT, &body))
    };
    let l3 = if raw { 0 } else { 14 };
    let ip_len = if v6 { 40 } else { 20 };
    let layout = Layout { l3, v6, strata: l3 + ip_len + 8, inner: l3 + ip_len + 8 + header.len() };
    let frame = if raw { ip } else { eth(if v6 { 0x86DD } else { 0x0800 }, &ip) };
    (frame, layout)
}

/// A frame of no protocol in particular, sometimes aimed at the Strata port
/// so the program's checks past the port see garbage too.
fn random_frame(rng: &mut Rng, raw: bool) -> Vec<u8> {
    let len = MIN_FRAME + rng.below(300);
    let mut f = rng.bytes(len);
    if rng.chance(2) {
        let v6 = rng.chance(2);
        let l3 = if raw { 0 } else { 14 };
        if !raw {
            f[12..14].copy_from_slice(&(if v6 { 0x86DDu16 } else { 0x0800 }).to_be_bytes());
        }
        if v6 && f.len() >= l3 + 48 {
            f[l3] = 0x60 | (f[l3] & 0x0f);
            f[l3 + 6] = 17;
            f[l3 + 24..l3 + 40].copy_from_slice(&HUB6.octets());
            f[l3 + 42..l3 + 44].copy_from_slice(&PORT.to_be_bytes());
        } else if !v6 && f.len() >= l3 + 28 {
            f[l3] = 0x45;
            f[l3 + 9] = 17;
            f[l3 + 16..l3 + 20].copy_from_slice(&HUB.octets());
            f[l3 + 22..l3 + 24].copy_from_slice(&PORT.to_be_bytes());
        }
    }
    f
}

/// The generator: valid frames, mutations of them, replays and random bytes.
#[derive(Debug)]
pub struct Generator {
    rng: Rng,
    global: u32,
    sent: Vec<Vec<u8>>,
}

impl Generator {
    /// A generator whose frames follow from `seed`.
    pub fn new(seed: u64) -> Self {
        Self { rng: Rng::new(seed), global: 1, sent: Vec::new() }
    }

    /// The next frame; `raw` without an Ethernet header.
    pub fn frame(&mut self, raw: bool) -> Frame {
        let rng = &mut self.rng;
        // Mostly fresh sequence numbers; sometimes an old one, so the
        // duplicate window is exercised with otherwise valid packets.
        self.global = self.global.wrapping_add(1);
        let global = if rng.chance(16) { rng.next_u64() as u32 } else { self.global };
        let kind = match rng.below(20) {
            0..=2 => Kind::Valid,
            3 => Kind::ValidControl,
            4..=6 => Kind::BitFlips,
            7..=8 => Kind::Truncated,
            9 => Kind::Extended,
            10..=13 => Kind::LengthLie,
            14..=15 => Kind::RandomHeader,
            16 => Kind::WrongSession,
            17 => Kind::Replay,
            _ => Kind::Random,
        };
        let packet_type = if kind == Kind::ValidControl { 1 + rng.below(4) as u8 } else { 0 };
        let (mut f, at) = valid_frame(rng, packet_type, global, raw);
        match kind {
            Kind::Valid | Kind::ValidControl => {}
            Kind::BitFlips => {
                for _ in 0..1 + rng.below(8) {
                    let i = rng.below(f.len());
                    f[i] ^= 1 << rng.below(8);
                }
            }
            Kind::Truncated => f.truncate(MIN_FRAME.max(rng.below(f.len()))),
            Kind::Extended => {
                let n = 1 + rng.below(64);
                let more = rng.bytes(n);
                f.extend(more);
            }
            Kind::LengthLie => {
                let lie = match rng.below(4) {
                    0 => rng.next_u64() as u16,
                    1 => 0,
                    // Off by a little: the likeliest lie to slip through.
                    _ => (rng.below(9) as u16).wrapping_sub(4),
                };
                let field = rng.below(5);
                let (at16, relative) = match field {
                    0 => (at.l3 + if at.v6 { 4 } else { 2 }, true),
                    1 => (at.l3 + if at.v6 { 44 } else { 24 }, true),
                    3 => (at.inner + if f.get(at.inner).is_some_and(|b| b >> 4 == 6) { 4 } else { 2 }, true),
                    _ => (at.strata + 3, false),
                };
                if relative && at16 + 2 <= f.len() {
                    let old = u16::from_be_bytes([f[at16], f[at16 + 1]]);
                    let new = if !(8..=0xfff0).contains(&lie) { old.wrapping_add(lie) } else { lie };
                    f[at16..at16 + 2].copy_from_slice(&new.to_be_bytes());
                } else if !relative && at16 < f.len() {
                    f[at16] = if rng.chance(2) { rng.byte() } else { rng.below(18) as u8 };
                }
            }
            Kind::RandomHeader => {
                let header = rng.bytes(20);
                let end = (at.strata + 20).min(f.len());
                f[at.strata..end].copy_from_slice(&header[..end - at.strata]);
                if rng.chance(2) && f.len() > at.strata + 4 {
                    // Keep the session so the later checks see it.
                    f[at.strata + 4..at.strata + 8].copy_from_slice(&SESSION.to_be_bytes());
                }
            }
            Kind::WrongSession => {
                let s = (SESSION ^ (1 << rng.below(32))).to_be_bytes();
                f[at.strata + 4..at.strata + 8].copy_from_slice(&s);
            }
            Kind::Replay => {
                if !self.sent.is_empty() {
                    let i = rng.below(self.sent.len());
                    f.clone_from(&self.sent[i]);
                }
            }
            Kind::Random => f = random_frame(rng, raw),
        }
        if self.sent.len() < 256 {
            self.sent.push(f.clone());
        } else {
            let i = rng.below(256);
            self.sent[i].clone_from(&f);
        }
        Frame { bytes: f, raw, kind }
    }
}

/// Whether the kernel's test run refuses `frame` before the program sees
/// it: it reads the first 14 bytes as Ethernet and, for the IPv4 or IPv6
/// EtherType, wants the whole fixed IP header (EINVAL otherwise, on 6.18).
/// Such frames are counted, not run.
pub fn refused_by_test_run(frame: &[u8]) -> bool {
    match u16_at(frame, 12) {
        Some(0x0800) => frame.len() < 14 + 20,
        Some(0x86DD) => frame.len() < 14 + 40,
        _ => false,
    }
}

fn u16_at(f: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*f.get(i)?, *f.get(i + 1)?]))
}

/// What a receiver must do with `frame` (docs/WIRE.md, "What a receiver
/// does"), on a hub listening on [`HUB`] and [`HUB6`] port [`PORT`];
/// `dedup` is the receiver's duplicate window as the oracle tracks it.
/// Returns the verdict and, for a delivered packet, where its inner packet
/// starts.
pub fn expect(frame: &[u8], raw: bool, policy: Policy, dedup: &mut Dedup) -> (Expected, usize) {
    use Expected::{Control, Delivered, Dropped, Foreign};
    let l3 = if raw { 0 } else { 14 };
    let v6 = if raw {
        frame.first().is_some_and(|b| b >> 4 == 6)
    } else {
        match u16_at(frame, 12) {
            Some(0x86DD) => true,
            Some(0x0800) => false,
            _ => return (Foreign, 0),
        }
    };
    // The outer headers: whether the frame is Strata's at all, and if so
    // whether they are consistent; then the offset of the Strata header and
    // the bytes from it to the end of the UDP payload.
    let (strata, available) = if v6 {
        let Some(ip) = frame.get(l3..l3 + 40) else { return (Foreign, 0) };
        if ip[0] >> 4 != 6 || ip[24..40] != HUB6.octets() {
            return (Foreign, 0);
        }
        if ip[6] == 44 {
            let Some(frag) = frame.get(l3 + 40..l3 + 44) else { return (Foreign, 0) };
            let first = u16::from_be_bytes([frag[2], frag[3]]) & 0xfff8 == 0;
            let ours = frame.get(l3 + 48..l3 + 56).is_some_and(|u| u16_at(u, 2) == Some(PORT));
            return (if frag[0] == 17 && first && ours { Dropped } else { Foreign }, 0);
        }
        if ip[6] != 17 {
            return (Foreign, 0);
        }
        let Some(u) = frame.get(l3 + 40..l3 + 48) else { return (Foreign, 0) };
        if u16_at(u, 2) != Some(PORT) {
            return (Foreign, 0);
        }
        let payload = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
        if payload != frame.len() - l3 - 40 || usize::from(u16::from_be_bytes([u[4], u[5]])) != payload {
            return (Dropped, 0);
        }
        if u[6] == 0 && u[7] == 0 {
            return (Dropped, 0);
        }
        (l3 + 48, payload - 8)
    } else {
        let Some(ip) = frame.get(l3..l3 + 20) else { return (Foreign, 0) };
        if ip[0] >> 4 != 4 || ip[9] != 17 || ip[16..20] != HUB.octets() {
            return (Foreign, 0);
        }
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let Some(u) = frame.get(l3 + ihl..l3 + ihl + 8) else { return (Foreign, 0) };
        if u16_at(u, 2) != Some(PORT) {
            return (Foreign, 0);
        }
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        if ihl != 20
            || u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0
            || total != frame.len() - l3
            || usize::from(u16::from_be_bytes([u[4], u[5]])) != total - 20
        {
            return (Dropped, 0);
        }
        (l3 + 28, total - 28)
    };
    // The Strata header.
    let Some(h) = frame.get(strata..strata + 20) else { return (Dropped, 0) };
    let words = usize::from(h[3]);
    if h[0] >> 4 != 1
        || h[0] & 0x0f > 4
        || !(5..=15).contains(&words)
        || words * 4 > available
        || u32::from_be_bytes([h[4], h[5], h[6], h[7]]) != SESSION
        || u32::from(h[2]) >= MAX_LINKS
    {
        return (Dropped, 0);
    }
    if h[0] & 0x0f != 0 {
        return (Control, 0);
    }
    // Exactly one inner IPv4 or IPv6 packet.
    let inner = strata + words * 4;
    let inner_len = available - words * 4;
    let Some(&first) = frame.get(inner) else { return (Dropped, 0) };
    let ok = match first >> 4 {
        4 => first & 0x0f >= 5 && u16_at(frame, inner + 2).map(usize::from) == Some(inner_len),
        _ => u16_at(frame, inner + 4).is_some_and(|l| first >> 4 == 6 && usize::from(l) + 40 == inner_len),
    };
    if !ok {
        return (Dropped, 0);
    }
    if dedup.seen(u32::from_be_bytes([h[8], h[9], h[10], h[11]])) {
        return (Dropped, 0);
    }
    match policy {
        Policy::SessionOnly => (Delivered, inner),
        Policy::AuthRequired => (Dropped, 0),
    }
}

/// The receiver's duplicate window as WIRE.md defines it: a global
/// sequence is a duplicate while its slot still holds it.
#[derive(Debug)]
pub struct Dedup(Vec<u64>);

impl Default for Dedup {
    fn default() -> Self {
        Self(vec![0; DEDUP_WINDOW as usize])
    }
}

impl Dedup {
    /// Records `seq`; true if it was already in its slot.
    pub fn seen(&mut self, seq: u32) -> bool {
        let tagged = 1 << 32 | u64::from(seq);
        let slot = &mut self.0[(seq & (DEDUP_WINDOW - 1)) as usize];
        std::mem::replace(slot, tagged) == tagged
    }
}

/// Runs `runs` frames from `seed` through a fresh hub's ingress program
/// (alternating Ethernet and raw-IP framing every 1 000 frames) and checks
/// every verdict; `progress` is called every 100 000 frames. Frames the
/// test run refuses (see [`refused_by_test_run`]) are generated in
/// addition, so `runs` frames reach the program.
pub fn campaign(
    runs: u64,
    seed: u64,
    policy: Policy,
    progress: &mut dyn FnMut(&Report),
) -> Result<Report, FuzzError> {
    let mut dp = hub_dual().map_err(Box::new)?;
    let mut generator = Generator::new(seed);
    let mut dedup = Dedup::default();
    let mut report = Report::default();
    let mut raw = false;
    let mut index = 0;
    while report.runs < runs {
        if index % 1000 == 0 {
            raw = (index / 1000) % 2 == 1;
            dp.set_interface(LO, if raw { 0 } else { 14 }).map_err(Box::new)?;
        }
        let frame = generator.frame(raw);
        let before = report.runs;
        check(&mut dp, &frame, index, policy, &mut dedup, &mut report)?;
        if report.runs > before && report.runs % 100_000 == 0 {
            progress(&report);
        }
        index += 1;
    }
    Ok(report)
}

fn check(
    dp: &mut Datapath,
    frame: &Frame,
    index: u64,
    policy: Policy,
    dedup: &mut Dedup,
    report: &mut Report,
) -> Result<(), FuzzError> {
    let (expected, inner) = expect(&frame.bytes, frame.raw, policy, dedup);
    if refused_by_test_run(&frame.bytes) {
        report.refused += 1;
        return Ok(());
    }
    let (verdict, out, _) = run(dp, Program::LinkIngress, &frame.bytes).map_err(|source| FuzzError::Run {
        index,
        kind: frame.kind,
        len: frame.bytes.len(),
        source: Box::new(source),
    })?;
    // On a raw-IP link the test run still takes the first 14 bytes for the
    // link-layer header (it has no other kind of device), so removing the
    // outer headers "after" it fails: a delivery there must end as a
    // counted decapsulation failure, never as a redirect of anything else.
    let decap_failed = || dp.snapshot().map(|s| s.dropped(DropReason::DecapFailed));
    if frame.raw && expected == Expected::Delivered && verdict == TC_ACT_SHOT {
        let now = decap_failed().map_err(Box::new)?;
        if now > report.decap_failed_raw {
            report.decap_failed_raw = now;
            report.runs += 1;
            *report.outcomes.entry(expected).or_default() += 1;
            *report.kinds.entry(frame.kind).or_default() += 1;
            report.raw_ip += 1;
            return Ok(());
        }
    }
    let want = match expected {
        Expected::Foreign | Expected::Control => TC_ACT_OK,
        Expected::Dropped => TC_ACT_SHOT,
        Expected::Delivered => TC_ACT_REDIRECT,
    };
    if verdict != want {
        let hex = frame.bytes.iter().map(|b| format!("{b:02x}")).collect();
        return Err(FuzzError::Disagree { index, kind: frame.kind, raw: frame.raw, expected, verdict, hex });
    }
    // On a raw-IP link the test run still treats the first 14 bytes as a
    // link-layer header, so only Ethernet-framed deliveries have bytes to compare.
    if expected == Expected::Delivered && !frame.raw {
        let mut want = frame.bytes[..12].to_vec();
        let version = frame.bytes[inner] >> 4;
        want.extend(if version == 6 { 0x86DDu16 } else { 0x0800 }.to_be_bytes());
        want.extend(&frame.bytes[inner..]);
        if out != want {
            return Err(FuzzError::WrongBytes { index });
        }
    }
    report.runs += 1;
    *report.outcomes.entry(expected).or_default() += 1;
    *report.kinds.entry(frame.kind).or_default() += 1;
    if verdict == TC_ACT_REDIRECT {
        report.delivered += 1;
        if !matches!(frame.kind, Kind::Valid) {
            report.delivered_mutated += 1;
        }
    }
    report.raw_ip += u64::from(frame.raw);
    let v6 = if frame.raw {
        frame.bytes.first().is_some_and(|b| b >> 4 == 6)
    } else {
        u16_at(&frame.bytes, 12) == Some(0x86DD)
    };
    report.outer_v6 += u64::from(v6);
    Ok(())
}
