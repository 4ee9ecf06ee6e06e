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
//! * nothing that is not a well-formed data packet of the session, fresh to
//!   the anti-replay window (and, with [`Policy::AuthRequired`], tagged
//!   under the session's key), is ever redirected to the tunnel (the
//!   security property);
//! * traffic that is not Strata's goes on to the next program (`TCX_NEXT`),
//!   so the program is a good neighbour to whatever else is attached;
//! * a test run never errors, and no verdict other than NEXT, OK, SHOT or
//!   REDIRECT comes back;
//! * a delivered packet comes out as exactly the inner packet.
//!
//! With [`Policy::AuthRequired`] the hub holds the testbed's fixed keys and
//! requires tags; the generator tags its valid frames with the edge's
//! sending key *before* mutating them (and sends some untagged, under the
//! wrong key or an uninstalled key phase), so every mutation of a covered
//! byte must be rejected, and the run also fails if a frame whose Strata
//! header and payload are not exactly as signed is ever delivered.
//!
//! Global sequences mostly follow the oracle's anchor (the highest
//! accepted), with edges of the window, too-old ones, jumps and restarts
//! (a jump, confirmed by the packets after it) mixed in. Per-link sequences
//! are random: WIRE.md's per-link rules only count (loss, reordering,
//! restarts), they never decide delivery, so the oracle ignores them.

use std::{collections::BTreeMap, net::Ipv4Addr, time::Instant};

use strata_common::{
    auth::{key_words, siphash24},
    drop::DropReason,
    maps::{MAX_LINKS, REPLAY_BLOCK, REPLAY_RESTART_DISTANCE, REPLAY_SLOTS, REPLAY_WINDOW},
};

use super::{
    CARRIER6, HUB, HUB6, LO, PORT, SESSION, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, TCX_NEXT, eth, hub_dual,
    ipv4, ipv6, require_test_auth, run, test_keys, udp, udp6,
};
use crate::dataplane::datapath::{Datapath, DatapathError, Program};

/// What the oracle requires of the program for one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Expected {
    /// Not Strata's: left to the next program, untouched (`TCX_NEXT`).
    Foreign,
    /// Addressed to Strata but malformed, of another session, without a
    /// valid tag (when required), a duplicate, too old or a jump: dropped
    /// (`TC_ACT_SHOT`).
    Dropped,
    /// A valid probe, reply, feedback or control message: up the stack to
    /// the controller's socket (`TC_ACT_OK`).
    Control,
    /// A valid data packet of the session, fresh to the anti-replay window:
    /// decapsulated and redirected to the tunnel.
    Delivered,
}

/// Which data packets may be delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// No keys installed: a well-formed header of the right session suffices.
    SessionOnly,
    /// The testbed's fixed keys (epoch 0) installed and tags required: only
    /// a packet tagged under the edge's sending key passes (WIRE.md,
    /// "Extensions and authentication"). The generator tags its valid
    /// frames, so mutations of tagged frames are what is tested.
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
    /// Delivered frames whose Strata header and payload were not exactly
    /// as the generator signed them (with [`Policy::AuthRequired`]; the
    /// run fails before this leaves 0).
    pub forged_delivered: u64,
    /// Frames run whose Strata header and payload were not exactly as
    /// signed (with [`Policy::AuthRequired`]: the forged and mutated inputs
    /// none of which may be delivered).
    pub not_as_signed: u64,
    /// Frames behind the window whose verdict depended on the time since the
    /// last accepted packet (the kernel was asked which rule it applied).
    pub time_dependent: u64,
    /// The program's drop counters at the end, by reason.
    pub drops: BTreeMap<String, u64>,
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
    /// A frame whose Strata part is not as signed was delivered with
    /// authentication required.
    #[error("frame {index} ({kind:?}): delivered although not as signed; frame {hex}")]
    Forged {
        /// Which frame.
        index: u64,
        /// How it was made.
        kind: Kind,
        /// The frame, hex.
        hex: String,
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
    /// Its Strata header and everything after it are exactly as the
    /// generator tagged them under the session's key (the outer headers,
    /// which the tag does not cover, may differ).
    pub genuine: bool,
}

/// How [`valid_frame`] treats the tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tagging {
    /// No `auth` flag, no tag (what [`Policy::SessionOnly`] sends; random
    /// flags may still set `auth`, which no installed key then checks).
    Untagged,
    /// Tagged with the edge's key of epoch 0, the one the hub holds.
    Signed,
    /// Tagged under a key the hub does not hold.
    WrongKey,
    /// Key phase 1, for which the hub has no key.
    OtherPhase,
}

/// The `auth` flag and the key phase (docs/WIRE.md, flags).
const AUTH: u8 = 0x08;
const KEY_PHASE: u8 = 0x20;
/// Bytes of the tag, after the fixed 20-byte header.
const TAG: std::ops::Range<usize> = 20..28;

/// Where the length fields lie in a frame built by [`valid_frame`].
struct Layout {
    l3: usize,
    v6: bool,
    strata: usize,
    inner: usize,
}

/// A valid frame: data (`packet_type` 0) or a control type, outer IPv4 or
/// IPv6, `ext` extension words, an inner IPv4 or IPv6 packet of `len` bytes,
/// tagged as `tagging` says. Also returns the Strata part (header and all
/// after it) as sent.
fn valid_frame(
    rng: &mut Rng,
    packet_type: u8,
    global: u32,
    raw: bool,
    tagging: Tagging,
) -> (Vec<u8>, Layout, Vec<u8>) {
    let v6 = rng.chance(2);
    let tagged = tagging != Tagging::Untagged;
    // A tagged header has the tag as its first two extension words.
    let (fixed, max_ext) = if tagged { (7, 8) } else { (5, 10) };
    let ext = if rng.chance(4) { rng.below(max_ext + 1) } else { 0 };
    let link = rng.below(MAX_LINKS as usize) as u8;
    let flags = match tagging {
        // Rarely the `auth` flag on a header too short for a tag
        // (`auth_bad` whatever the policy): more often, half the packets
        // would test nothing else.
        Tagging::Untagged => rng.byte() & if rng.chance(16) { 0x1f } else { 0x1f & !AUTH },
        Tagging::Signed | Tagging::WrongKey => (rng.byte() & 0x1f) | AUTH,
        Tagging::OtherPhase => (rng.byte() & 0x1f) | AUTH | KEY_PHASE,
    };
    let mut header =
        super::strata(packet_type, flags, link, fixed + ext as u8, SESSION, global, rng.next_u64() as u32);
    if tagged {
        header.extend([0; 8]);
    }
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
    match tagging {
        Tagging::Untagged => {}
        Tagging::Signed | Tagging::OtherPhase => {
            // Phase 1 is signed with the edge's key of epoch 1, which the
            // hub (epoch 0 only) does not hold.
            let epoch = u32::from(tagging == Tagging::OtherPhase);
            tag_body(&key_words(&test_keys(epoch, false).send), &mut body);
        }
        Tagging::WrongKey => {
            let mut key = [0u8; 16];
            key.iter_mut().for_each(|b| *b = rng.byte());
            tag_body(&key_words(&key), &mut body);
        }
    }
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
    (frame, layout, body)
}

/// The tag of a Strata part (header and all after it) under `key`, as WIRE.md
/// defines it: SipHash-2-4 over the whole part with the 8 tag bytes read as
/// zero, written little-endian. Computed over a copy with plain
/// [`siphash24`] (checked against the paper's vectors in strata-common),
/// not with the word-masking code the kernel and the controller share.
fn tag_of(key: &[u64; 2], part: &[u8]) -> [u8; 8] {
    let mut copy = part.to_vec();
    copy[TAG].fill(0);
    siphash24(key, &copy).to_le_bytes()
}

fn tag_body(key: &[u64; 2], body: &mut [u8]) {
    let t = tag_of(key, body);
    body[TAG].copy_from_slice(&t);
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
    policy: Policy,
    /// The sender's global sequence counter.
    global: u32,
    /// Frames left until the counter follows the receiver's anchor again
    /// after a restart (the packets after it have to confirm the jump).
    restart: u32,
    /// Earlier frames, their framing and whether they were genuine.
    sent: Vec<(Vec<u8>, bool, bool)>,
}

impl Generator {
    /// A generator whose frames follow from `seed`, tagged for `policy`.
    pub fn new(seed: u64, policy: Policy) -> Self {
        Self { rng: Rng::new(seed), policy, global: 1, restart: 0, sent: Vec::new() }
    }

    /// The next global sequence. `anchor` is the highest the receiver
    /// accepted (the oracle's model of it), so the counter never falls a
    /// window behind it — a mutated sequence that happened to be accepted
    /// ahead would otherwise leave every later packet `too_old`. Mostly the
    /// counter's next value; sometimes an older one within the window,
    /// the window's edges, one behind the window (`too_old`), a random one
    /// (almost always a jump), or a restart: a jump ahead by more than a
    /// window or back by more than 2^24, which the packets after it confirm.
    ///
    /// Behind the window by at most 2^24 is `too_old` only while the
    /// receiver accepted something in the last second: campaigns accept a
    /// packet every few frames, so that holds unless the process stalls for
    /// a second, and the oracle then asks the program which rule it applied
    /// (see [`Pending`]).
    fn global(&mut self, anchor: Option<u32>) -> u32 {
        let rng = &mut self.rng;
        if self.restart > 0 {
            self.restart -= 1;
        } else if let Some(a) = anchor
            && (a.wrapping_sub(self.global) as i32) > 0
        {
            self.global = a;
        }
        self.global = self.global.wrapping_add(1);
        let base = anchor.unwrap_or(self.global);
        let w = REPLAY_WINDOW;
        let far = REPLAY_RESTART_DISTANCE;
        match rng.below(256) {
            0..=3 => base.wrapping_sub(w + rng.below((far - w + 1) as usize) as u32),
            4..=11 => base.wrapping_sub(rng.below(w as usize) as u32),
            12..=13 => {
                let edges = [w - 1, w, w + 1, far, far + 1];
                let behind = edges[rng.below(edges.len())];
                if rng.chance(2) { base.wrapping_sub(behind) } else { base.wrapping_add(behind) }
            }
            14..=15 => rng.next_u64() as u32,
            16 => {
                let r = if rng.chance(2) {
                    base.wrapping_add(w + 1 + rng.below(1 << 28) as u32)
                } else {
                    base.wrapping_sub(far + 1 + rng.below(1 << 28) as u32)
                };
                self.global = r;
                self.restart = 64;
                r
            }
            _ => self.global,
        }
    }

    /// The next frame; `raw` without an Ethernet header; `anchor` as for
    /// [`Generator::global`].
    pub fn frame(&mut self, raw: bool, anchor: Option<u32>) -> Frame {
        let global = self.global(anchor);
        let rng = &mut self.rng;
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
        let tagging = match (self.policy, rng.below(32)) {
            (Policy::SessionOnly, _) => Tagging::Untagged,
            (Policy::AuthRequired, 0) => Tagging::Untagged,
            (Policy::AuthRequired, 1) => Tagging::WrongKey,
            (Policy::AuthRequired, 2) => Tagging::OtherPhase,
            (Policy::AuthRequired, _) => Tagging::Signed,
        };
        let packet_type = if kind == Kind::ValidControl { 1 + rng.below(4) as u8 } else { 0 };
        let (mut f, at, signed) = valid_frame(rng, packet_type, global, raw, tagging);
        // Mutations come after tagging: with authentication required every
        // change to a covered byte must fail the tag.
        let mut replayed = None;
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
                    let (bytes, was_raw, genuine) = &self.sent[i];
                    f.clone_from(bytes);
                    // Genuine bytes in the other framing are parsed at
                    // other offsets: not the signed packet any more.
                    replayed = Some(*genuine && *was_raw == raw);
                }
            }
            Kind::Random => f = random_frame(rng, raw),
        }
        let genuine = replayed.unwrap_or_else(|| {
            tagging == Tagging::Signed && kind != Kind::Random && f.get(at.strata..) == Some(&signed[..])
        });
        if self.sent.len() < 256 {
            self.sent.push((f.clone(), raw, genuine));
        } else {
            let i = rng.below(256);
            self.sent[i] = (f.clone(), raw, genuine);
        }
        Frame { bytes: f, raw, kind, genuine }
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
/// does"), on a hub listening on [`HUB`] and [`HUB6`] port [`PORT`], holding
/// the testbed's keys of epoch 0 with `policy` [`Policy::AuthRequired`];
/// `window` is the receiver's anti-replay window as the oracle tracks it.
/// Returns the verdict, for a delivered packet where its inner packet
/// starts, and a [`Pending`] decision if the verdict depends on time.
pub fn expect(
    frame: &[u8],
    raw: bool,
    policy: Policy,
    window: &mut ReplayWindow,
) -> (Expected, usize, Option<Pending>) {
    use Expected::{Control, Delivered, Dropped, Foreign};
    let l3 = if raw { 0 } else { 14 };
    let v6 = if raw {
        frame.first().is_some_and(|b| b >> 4 == 6)
    } else {
        match u16_at(frame, 12) {
            Some(0x86DD) => true,
            Some(0x0800) => false,
            _ => return (Foreign, 0, None),
        }
    };
    // The outer headers: whether the frame is Strata's at all, and if so
    // whether they are consistent; then the offset of the Strata header and
    // the bytes from it to the end of the UDP payload.
    let (strata, available) = if v6 {
        let Some(ip) = frame.get(l3..l3 + 40) else { return (Foreign, 0, None) };
        if ip[0] >> 4 != 6 || ip[24..40] != HUB6.octets() {
            return (Foreign, 0, None);
        }
        if ip[6] == 44 {
            let Some(frag) = frame.get(l3 + 40..l3 + 44) else { return (Foreign, 0, None) };
            let first = u16::from_be_bytes([frag[2], frag[3]]) & 0xfff8 == 0;
            let ours = frame.get(l3 + 48..l3 + 56).is_some_and(|u| u16_at(u, 2) == Some(PORT));
            return (if frag[0] == 17 && first && ours { Dropped } else { Foreign }, 0, None);
        }
        if ip[6] != 17 {
            return (Foreign, 0, None);
        }
        let Some(u) = frame.get(l3 + 40..l3 + 48) else { return (Foreign, 0, None) };
        if u16_at(u, 2) != Some(PORT) {
            return (Foreign, 0, None);
        }
        let payload = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
        if payload != frame.len() - l3 - 40 || usize::from(u16::from_be_bytes([u[4], u[5]])) != payload {
            return (Dropped, 0, None);
        }
        if u[6] == 0 && u[7] == 0 {
            return (Dropped, 0, None);
        }
        (l3 + 48, payload - 8)
    } else {
        let Some(ip) = frame.get(l3..l3 + 20) else { return (Foreign, 0, None) };
        if ip[0] >> 4 != 4 || ip[9] != 17 || ip[16..20] != HUB.octets() {
            return (Foreign, 0, None);
        }
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let Some(u) = frame.get(l3 + ihl..l3 + ihl + 8) else { return (Foreign, 0, None) };
        if u16_at(u, 2) != Some(PORT) {
            return (Foreign, 0, None);
        }
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        if ihl != 20
            || u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0
            || total != frame.len() - l3
            || usize::from(u16::from_be_bytes([u[4], u[5]])) != total - 20
        {
            return (Dropped, 0, None);
        }
        (l3 + 28, total - 28)
    };
    // The Strata header.
    let Some(h) = frame.get(strata..strata + 20) else { return (Dropped, 0, None) };
    let words = usize::from(h[3]);
    if h[0] >> 4 != 1
        || h[0] & 0x0f > 4
        || !(5..=15).contains(&words)
        || words * 4 > available
        || u32::from_be_bytes([h[4], h[5], h[6], h[7]]) != SESSION
        || u32::from(h[2]) >= MAX_LINKS
    {
        return (Dropped, 0, None);
    }
    // The tag (step 3), before anything else is looked at. A header with
    // the `auth` flag too short to hold a tag is `auth_bad` whatever the
    // policy; otherwise, not required and no key installed, a tag is not
    // checked.
    let tagged = h[1] & AUTH != 0;
    if tagged && words < 7 {
        return (Dropped, 0, None);
    }
    if policy == Policy::AuthRequired {
        // Untagged, or of key phase 1 (no key): `auth_missing`; a part
        // beyond 2 047 bytes, or a wrong tag: `auth_bad`.
        let part = &frame[strata..strata + available];
        let key = key_words(&test_keys(0, true).recv);
        if !tagged || h[1] & KEY_PHASE != 0 || available > 2047 || part[TAG] != tag_of(&key, part) {
            return (Dropped, 0, None);
        }
    }
    if h[0] & 0x0f != 0 {
        return (Control, 0, None);
    }
    // Exactly one inner IPv4 or IPv6 packet.
    let inner = strata + words * 4;
    let inner_len = available - words * 4;
    let Some(&first) = frame.get(inner) else { return (Dropped, 0, None) };
    let ok = match first >> 4 {
        4 => first & 0x0f >= 5 && u16_at(frame, inner + 2).map(usize::from) == Some(inner_len),
        _ => u16_at(frame, inner + 4).is_some_and(|l| first >> 4 == 6 && usize::from(l) + 40 == inner_len),
    };
    if !ok {
        return (Dropped, 0, None);
    }
    let seq = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
    match window.judge(seq) {
        Judged::Fresh => (Delivered, inner, None),
        Judged::Refused => (Dropped, 0, None),
        Judged::BehindWindow => {
            let (if_quiet, _) = window.clone().judge_jump(seq);
            (Dropped, inner, Some(Pending { seq, if_quiet }))
        }
    }
}

/// A packet behind the window by no more than 2^24: `too_old` — unless no
/// packet was accepted for a second (`REPLAY_QUIET_NS`), when it is a jump,
/// which may confirm an earlier one and be delivered. Whether the program
/// saw a second of quiet is known only around its run (see [`check`]).
#[derive(Clone, Copy, Debug)]
pub struct Pending {
    /// The packet's global sequence.
    pub seq: u32,
    /// Whether, taken as a jump, it would confirm one and be delivered.
    pub if_quiet: bool,
}

/// What the window says about a sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judged {
    /// Accepted (and recorded).
    Fresh,
    /// `duplicate`, `too_old` or `seq_jump` (state updated as the receiver's).
    Refused,
    /// Behind the window by at most 2^24: see [`Pending`]; nothing changed yet.
    BehindWindow,
}

/// The receiver's anti-replay window as WIRE.md describes it (step 6,
/// after RFC 6479): the highest global sequence accepted (the anchor),
/// which of the `REPLAY_WINDOW` sequences up to it were accepted, and the
/// jump remembered for confirmation.
///
/// The record of accepted sequences is a bitmap of `REPLAY_SLOTS` words of
/// `REPLAY_BLOCK` sequences, each word naming the block it holds, as
/// strata-common/src/maps.rs documents the map: a word holding a block one
/// or two bitmaps newer than a sequence's makes that sequence too old, and
/// any other block in its word is replaced. Modelled so, rather than as a
/// set of every sequence ever accepted, because the two differ after the
/// window re-anchors onto ground it covered before; within one anchoring
/// they agree.
#[derive(Clone, Debug)]
pub struct ReplayWindow {
    anchor: Option<u32>,
    words: Vec<u64>,
    candidate: Option<u32>,
    /// Packets dropped as `seq_jump` so far (to tell, from the program's
    /// counter, which rule a time-dependent packet met).
    jumps: u64,
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self { anchor: None, words: vec![0; REPLAY_SLOTS as usize], candidate: None, jumps: 0 }
    }
}

impl ReplayWindow {
    /// The highest global sequence accepted, once one was.
    pub fn anchor(&self) -> Option<u32> {
        self.anchor
    }

    /// Judges data packet `seq` as the receiver does while packets keep
    /// arriving (no second of quiet), updating the state like it.
    pub fn judge(&mut self, seq: u32) -> Judged {
        let Some(anchor) = self.anchor else {
            // The first packet anchors the window.
            self.anchor = Some(seq);
            return self.record(seq);
        };
        let ahead = i64::from(seq.wrapping_sub(anchor) as i32);
        let w = i64::from(REPLAY_WINDOW);
        if ahead > 0 && ahead <= w {
            self.anchor = Some(seq);
            self.record(seq)
        } else if ahead <= 0 && -ahead < w {
            self.record(seq)
        } else if ahead <= 0 && -ahead <= i64::from(REPLAY_RESTART_DISTANCE) {
            Judged::BehindWindow
        } else {
            self.judge_jump(seq).1
        }
    }

    /// `seq` as a jump: confirms the remembered one if within a window of
    /// it (and not the same), re-anchoring at the later of the two, else
    /// becomes the one remembered. Returns whether it was accepted, and
    /// the judgement.
    pub fn judge_jump(&mut self, seq: u32) -> (bool, Judged) {
        let confirms = self.candidate.is_some_and(|c| {
            let d = i64::from(seq.wrapping_sub(c) as i32);
            d != 0 && d.abs() <= i64::from(REPLAY_WINDOW)
        });
        if !confirms {
            self.candidate = Some(seq);
            self.jumps += 1;
            return (false, Judged::Refused);
        }
        let c = self.candidate.take().unwrap_or(seq);
        self.anchor = Some(if (seq.wrapping_sub(c) as i32) > 0 { seq } else { c });
        let judged = self.record(seq);
        (judged == Judged::Fresh, judged)
    }

    /// Records `seq` in its word: fresh, or a duplicate, or too old when
    /// the word holds a block one or two bitmaps newer.
    fn record(&mut self, seq: u32) -> Judged {
        let word = &mut self.words[((seq / REPLAY_BLOCK) % REPLAY_SLOTS) as usize];
        let tag = (seq & !(REPLAY_BLOCK - 1)) | 1;
        let bit = 1u64 << (seq % REPLAY_BLOCK);
        let held = (*word >> 32) as u32;
        if held == tag {
            if *word & bit != 0 {
                return Judged::Refused;
            }
            *word |= bit;
        } else {
            let newer = held.wrapping_sub(tag);
            if held & 1 == 1 && newer != 0 && newer <= 2 * REPLAY_SLOTS * REPLAY_BLOCK {
                return Judged::Refused;
            }
            *word = u64::from(tag) << 32 | bit;
        }
        Judged::Fresh
    }
}

/// Runs `runs` frames from `seed` through a fresh hub's ingress program
/// (alternating Ethernet and raw-IP framing every 1 000 frames) and checks
/// every verdict; `progress` is called every 100 000 frames. Frames the
/// test run refuses (see [`refused_by_test_run`]) are generated in
/// addition, so `runs` frames reach the program. With
/// [`Policy::AuthRequired`] the hub holds the testbed's keys of epoch 0 and
/// requires tags.
pub fn campaign(
    runs: u64,
    seed: u64,
    policy: Policy,
    progress: &mut dyn FnMut(&Report),
) -> Result<Report, FuzzError> {
    let mut dp = hub_dual().map_err(Box::new)?;
    if policy == Policy::AuthRequired {
        require_test_auth(&mut dp, 0, true).map_err(Box::new)?;
    }
    let mut generator = Generator::new(seed, policy);
    let mut state = State { window: ReplayWindow::default(), last_accept: None };
    let mut report = Report::default();
    let mut raw = false;
    let mut index = 0;
    while report.runs < runs {
        if index % 1000 == 0 {
            raw = (index / 1000) % 2 == 1;
            dp.set_interface(LO, if raw { 0 } else { 14 }).map_err(Box::new)?;
        }
        let frame = generator.frame(raw, state.window.anchor());
        let before = report.runs;
        check(&mut dp, &frame, index, policy, &mut state, &mut report)?;
        if report.runs > before && report.runs % 100_000 == 0 {
            progress(&report);
        }
        index += 1;
    }
    let snap = dp.snapshot().map_err(Box::new)?;
    report.drops = snap.drops.into_iter().collect();
    Ok(report)
}

/// The oracle's state across frames.
struct State {
    window: ReplayWindow,
    /// When the run of the last packet the window accepted began.
    last_accept: Option<Instant>,
}

/// Below this since the last accepted packet's run began, a packet behind
/// the window is certainly `too_old`: the program's quiet rule needs a full
/// second, and its record of the last acceptance lags by at most a
/// millisecond (it is written at most once a millisecond).
const SURELY_NOT_QUIET_S: f64 = 0.9;

fn check(
    dp: &mut Datapath,
    frame: &Frame,
    index: u64,
    policy: Policy,
    state: &mut State,
    report: &mut Report,
) -> Result<(), FuzzError> {
    let (mut expected, inner, pending) = expect(&frame.bytes, frame.raw, policy, &mut state.window);
    if refused_by_test_run(&frame.bytes) {
        // The oracle judged it, but the program never saw it: the window
        // must not have moved. Frames this short never reach the Strata
        // header, so nothing was judged.
        report.refused += 1;
        return Ok(());
    }
    let started = Instant::now();
    let (verdict, out, _) = run(dp, Program::LinkIngress, &frame.bytes).map_err(|source| FuzzError::Run {
        index,
        kind: frame.kind,
        len: frame.bytes.len(),
        source: Box::new(source),
    })?;
    if let Some(p) = pending {
        // Behind the window: `too_old` unless the program had seen a second
        // without an accepted packet (never, unless this process stalled).
        let calm = state.last_accept.is_some_and(|t| t.elapsed().as_secs_f64() < SURELY_NOT_QUIET_S);
        if !calm {
            // The only time-dependent verdict: ask the program which rule it
            // applied (its `seq_jump` count against the oracle's), and hold
            // it to that rule.
            report.time_dependent += 1;
            let jumps = dp.snapshot().map_err(Box::new)?.dropped(DropReason::SeqJump);
            if verdict == TC_ACT_REDIRECT || jumps > state.window.jumps {
                let accepted = state.window.judge_jump(p.seq).0;
                debug_assert_eq!(accepted, p.if_quiet);
                if accepted {
                    expected = Expected::Delivered;
                }
            }
        }
    }
    if expected == Expected::Delivered {
        state.last_accept = Some(started);
    }
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
            report.not_as_signed += u64::from(policy == Policy::AuthRequired && !frame.genuine);
            *report.outcomes.entry(expected).or_default() += 1;
            *report.kinds.entry(frame.kind).or_default() += 1;
            report.raw_ip += 1;
            return Ok(());
        }
    }
    let want = match expected {
        Expected::Foreign => TCX_NEXT,
        Expected::Control => TC_ACT_OK,
        Expected::Dropped => TC_ACT_SHOT,
        Expected::Delivered => TC_ACT_REDIRECT,
    };
    let hex = || frame.bytes.iter().map(|b| format!("{b:02x}")).collect();
    if verdict != want {
        return Err(FuzzError::Disagree {
            index,
            kind: frame.kind,
            raw: frame.raw,
            expected,
            verdict,
            hex: hex(),
        });
    }
    // The acceptance property of authentication, checked apart from the
    // oracle: nothing but the signed bytes is ever delivered.
    if verdict == TC_ACT_REDIRECT && policy == Policy::AuthRequired && !frame.genuine {
        report.forged_delivered += 1;
        return Err(FuzzError::Forged { index, kind: frame.kind, hex: hex() });
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
    report.not_as_signed += u64::from(policy == Policy::AuthRequired && !frame.genuine);
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
