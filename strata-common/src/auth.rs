//! Per-packet authentication: the tag every Strata packet carries, and the
//! keys the kernel computes and checks it with (see `docs/WIRE.md`,
//! "Authentication").
//!
//! The tag is **SipHash-2-4** (Aumasson & Bernstein, 2012) with a 128-bit
//! key, 64-bit output, over the Strata header — its tag bytes read as zero —
//! and everything after it in the UDP payload (the inner packet, or a
//! control payload). SipHash is a keyed PRF built from 64-bit add, rotate and
//! xor only, so the eBPF programs compute it with the same code as
//! userspace: this module is the one implementation, used by the kernel
//! programs (word by word over a per-CPU copy of the packet, see
//! `strata-ebpf/src/auth.rs`) and by the controller (over a byte slice).
//!
//! Security level: a forger who does not know the key succeeds with a
//! probability of about 2⁻⁶⁴ per attempt (a PRF with 64-bit output; the
//! 128-bit key resists key search); at 10⁴ forged packets a second that is
//! one success in ≈ 5·10⁷ years. The outer IP and UDP headers are not
//! covered — carrier NAT rewrites them — so a carrier may redirect, drop or
//! delay packets, but not alter or invent one.

/// Bytes of the tag on the wire.
pub const TAG_LEN: usize = 8;
/// Where the tag lies in an authenticated header: its first two extension
/// words (bytes 20..28), the header being at least [`AUTH_HEADER_WORDS`] long.
pub const TAG_OFFSET: usize = crate::wire::HEADER_LEN;
/// Header words of an authenticated packet: the five fixed ones and the tag.
pub const AUTH_HEADER_WORDS: u8 = crate::wire::HEADER_WORDS + (TAG_LEN / 4) as u8;
/// Bytes of an authenticated header.
pub const AUTH_HEADER_LEN: usize = AUTH_HEADER_WORDS as usize * 4;

/// Slots of the `STRATA_AUTH_KEYS` map: the key epoch's low bit chooses one,
/// so the current and the previous (or next) epoch are installed together
/// and a rotation loses no packet in flight.
pub const KEY_SLOTS: u32 = 2;

/// [`AuthKey::flags`]: the slot holds a key; packets whose key phase names
/// this slot are verified with [`AuthKey::recv`].
pub const KEY_VALID: u32 = 1 << 0;
/// [`AuthKey::flags`]: the sender tags outgoing packets with this slot's
/// [`AuthKey::send`] (exactly one slot should say so; the kernel takes the
/// first that does).
pub const KEY_SEND: u32 = 1 << 1;

/// One key epoch as the kernel holds it (`STRATA_AUTH_KEYS[epoch & 1]`).
///
/// Keys are per direction: the edge's `send` is the hub's `recv` and the
/// other way round, so a packet reflected back to its sender does not verify.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuthKey {
    /// The epoch this key belongs to (its low bit is the wire's key phase).
    pub epoch: u32,
    /// `KEY_*` bits.
    pub flags: u32,
    /// SipHash key for packets this side sends, as two little-endian words.
    pub send: [u64; 2],
    /// SipHash key for packets this side receives.
    pub recv: [u64; 2],
}

impl AuthKey {
    /// An installed epoch; `send` says whether this side signs with it.
    pub const fn new(epoch: u32, send_key: &[u8; 16], recv_key: &[u8; 16], send: bool) -> Self {
        Self {
            epoch,
            flags: KEY_VALID | if send { KEY_SEND } else { 0 },
            send: key_words(send_key),
            recv: key_words(recv_key),
        }
    }

    /// Whether packets of this slot's phase can be verified.
    #[inline(always)]
    pub const fn valid(&self) -> bool {
        self.flags & KEY_VALID != 0
    }

    /// Whether this side signs with this slot.
    #[inline(always)]
    pub const fn sends(&self) -> bool {
        self.flags & (KEY_VALID | KEY_SEND) == KEY_VALID | KEY_SEND
    }

    /// The wire's key-phase bit for this epoch (the `key phase` flag).
    #[inline(always)]
    pub const fn phase(&self) -> u8 {
        (self.epoch & 1) as u8
    }
}

/// The keys of one epoch as the handshake hands them to the data plane
/// (`Datapath::install_keys` in strata-ctl): 128-bit SipHash keys, one per
/// direction, from this side's point of view.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TrafficKeys {
    /// Epoch number; consecutive epochs alternate the key phase (its low bit).
    pub epoch: u32,
    /// Key of the packets this side sends.
    pub send: [u8; 16],
    /// Key of the packets this side receives.
    pub recv: [u8; 16],
}

impl core::fmt::Debug for TrafficKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never the keys themselves: this ends up in logs.
        f.debug_struct("TrafficKeys").field("epoch", &self.epoch).finish_non_exhaustive()
    }
}

impl TrafficKeys {
    /// Keys from two 32-byte secrets (what a Noise `Split()` yields): the
    /// first 16 bytes of each. A uniformly random 32-byte secret's first
    /// half is a uniformly random 128-bit key; SipHash takes no more.
    pub fn from_secrets(epoch: u32, send: &[u8; 32], recv: &[u8; 32]) -> Self {
        let mut k = Self { epoch, send: [0; 16], recv: [0; 16] };
        k.send.copy_from_slice(&send[..16]);
        k.recv.copy_from_slice(&recv[..16]);
        k
    }

    /// The kernel's map entry for these keys.
    pub const fn entry(&self, send: bool) -> AuthKey {
        AuthKey::new(self.epoch, &self.send, &self.recv, send)
    }

    /// The slot of `STRATA_AUTH_KEYS` these keys go to.
    pub const fn slot(&self) -> u32 {
        self.epoch & 1
    }
}

/// Fixed, public **test** key of the edge → hub direction: what the golden
/// tests and the benchmarks install
/// until the handshake derives real keys. Authenticates nothing against
/// anyone who reads this file.
pub const TEST_KEY_UP: [u8; 16] = *b"strata-test-up!!";
/// Fixed, public test key of the hub → edge direction.
pub const TEST_KEY_DOWN: [u8; 16] = *b"strata-test-down";

/// The fixed test keys of `epoch` from one side's point of view (`hub` or
/// edge); other epochs get keys that differ in their last byte.
pub const fn test_keys(epoch: u32, hub: bool) -> TrafficKeys {
    let (mut up, mut down) = (TEST_KEY_UP, TEST_KEY_DOWN);
    up[15] ^= epoch as u8;
    down[15] ^= epoch as u8;
    if hub {
        TrafficKeys { epoch, send: down, recv: up }
    } else {
        TrafficKeys { epoch, send: up, recv: down }
    }
}

/// A 16-byte key as SipHash's two little-endian words `k0, k1`.
pub const fn key_words(key: &[u8; 16]) -> [u64; 2] {
    let mut k0 = [0u8; 8];
    let mut k1 = [0u8; 8];
    let mut i = 0;
    while i < 8 {
        k0[i] = key[i];
        k1[i] = key[8 + i];
        i += 1;
    }
    [u64::from_le_bytes(k0), u64::from_le_bytes(k1)]
}

/// SipHash's state: four 64-bit words.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct SipState {
    /// v0..v3 of the paper.
    pub v: [u64; 4],
}

/// One SipRound.
#[inline(always)]
const fn round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
}

impl SipState {
    /// The state after keying with `k0, k1`.
    #[inline(always)]
    pub const fn new(key: &[u64; 2]) -> Self {
        Self {
            v: [
                key[0] ^ 0x736f_6d65_7073_6575,
                key[1] ^ 0x646f_7261_6e64_6f6d,
                key[0] ^ 0x6c79_6765_6e65_7261,
                key[1] ^ 0x7465_6462_7974_6573,
            ],
        }
    }

    /// Absorbs one message word `m` (8 message bytes read little-endian):
    /// two compression rounds.
    #[inline(always)]
    pub const fn compress(&mut self, m: u64) {
        self.v[3] ^= m;
        round(&mut self.v);
        round(&mut self.v);
        self.v[0] ^= m;
    }

    /// Absorbs the final word ([`last_word`]) and returns the 64-bit
    /// output: four finalisation rounds.
    #[inline(always)]
    pub const fn finish(mut self, last: u64) -> u64 {
        self.compress(last);
        self.v[2] ^= 0xff;
        round(&mut self.v);
        round(&mut self.v);
        round(&mut self.v);
        round(&mut self.v);
        self.v[0] ^ self.v[1] ^ self.v[2] ^ self.v[3]
    }
}

/// SipHash's last message word: the message length mod 256 in the top byte
/// and the `len % 8` trailing bytes below it. `tail` is the 8 bytes at the
/// trailing bytes' position read little-endian, whatever follows them (they
/// are masked off), so a reader may over-read into zeroed or stale memory.
#[inline(always)]
pub const fn last_word(len: usize, tail: u64) -> u64 {
    let rem = (len % 8) as u32;
    let mask = if rem == 0 { 0 } else { u64::MAX >> (64 - 8 * rem) };
    ((len as u64) << 56) | (tail & mask)
}

/// SipHash-2-4 of `data` under `key` (userspace and tests; the kernel feeds
/// [`SipState`] word by word).
pub fn siphash24(key: &[u64; 2], data: &[u8]) -> u64 {
    let mut s = SipState::new(key);
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        s.compress(u64::from_le_bytes(b));
    }
    let mut b = [0u8; 8];
    let rest = words.remainder();
    b[..rest.len()].copy_from_slice(rest);
    s.finish(last_word(data.len(), u64::from_le_bytes(b)))
}

/// The tag of a packet: `packet` is the Strata header and everything after
/// it, the header at least [`AUTH_HEADER_LEN`] long; its tag bytes are
/// taken as zero whatever they hold. `None` if `packet` is too short.
pub fn packet_tag(key: &[u64; 2], packet: &[u8]) -> Option<[u8; TAG_LEN]> {
    if packet.len() < AUTH_HEADER_LEN {
        return None;
    }
    let mut s = SipState::new(key);
    let mut words = packet.chunks_exact(8);
    let mut at = 0;
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        // The tag is bytes 20..28: the upper half of word 2, the lower half of word 3.
        match at {
            16 => b[4..].fill(0),
            24 => b[..4].fill(0),
            _ => {}
        }
        s.compress(u64::from_le_bytes(b));
        at += 8;
    }
    let mut b = [0u8; 8];
    let rest = words.remainder();
    b[..rest.len()].copy_from_slice(rest);
    Some(s.finish(last_word(packet.len(), u64::from_le_bytes(b))).to_le_bytes())
}

/// A sending key as userspace tags its control packets with it: the key
/// phase (wire flag) and the SipHash key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SendKey {
    /// Low bit of the key epoch.
    pub phase: u8,
    /// SipHash key words.
    pub key: [u64; 2],
}

impl core::fmt::Debug for SendKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SendKey").field("phase", &self.phase).finish_non_exhaustive()
    }
}

impl SendKey {
    /// The sending key of an installed slot, if it is the one sent with.
    pub const fn of(slot: &AuthKey) -> Option<Self> {
        if slot.sends() { Some(Self { phase: slot.phase(), key: slot.send }) } else { None }
    }
}

/// Writes a packet — `header`, then `body` — into `out` and returns its
/// length: with `key`, authenticated (the `auth` flag and key phase set,
/// [`AUTH_HEADER_WORDS`] words, the tag computed); without, a plain v1
/// header. Whatever `auth` or key-phase bits `header` had (an echoed probe)
/// are replaced.
pub fn seal(
    key: Option<&SendKey>,
    mut header: crate::wire::Header,
    body: &[u8],
    out: &mut [u8],
) -> Result<usize, crate::drop::DropReason> {
    use crate::wire::{HEADER_LEN, HEADER_WORDS, flags};
    header.flags &= !(flags::AUTH | flags::KEY_PHASE);
    let head = match key {
        Some(k) => {
            header.flags |= flags::AUTH | if k.phase & 1 != 0 { flags::KEY_PHASE } else { 0 };
            header.header_words = AUTH_HEADER_WORDS;
            AUTH_HEADER_LEN
        }
        None => {
            header.header_words = HEADER_WORDS;
            HEADER_LEN
        }
    };
    let len = head + body.len();
    let Some(packet) = out.get_mut(..len) else {
        return Err(crate::drop::DropReason::Truncated);
    };
    header.encode(packet)?;
    packet[HEADER_LEN..head].fill(0);
    packet[head..].copy_from_slice(body);
    if let Some(k) = key {
        sign(&k.key, packet);
    }
    Ok(len)
}

/// Writes the tag into `packet` (see [`packet_tag`]); false if it is too short.
pub fn sign(key: &[u64; 2], packet: &mut [u8]) -> bool {
    match packet_tag(key, packet) {
        Some(tag) => {
            packet[TAG_OFFSET..TAG_OFFSET + TAG_LEN].copy_from_slice(&tag);
            true
        }
        None => false,
    }
}

/// Whether `packet`'s tag is right under `key`. Compared without an early
/// exit, so timing does not say how many bytes of a guess were right.
pub fn verify(key: &[u64; 2], packet: &[u8]) -> bool {
    let Some(tag) = packet_tag(key, packet) else {
        return false;
    };
    let mut diff = 0u8;
    let mut i = 0;
    while i < TAG_LEN {
        diff |= tag[i] ^ packet[TAG_OFFSET + i];
        i += 1;
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    /// The key of the SipHash paper's test vectors: bytes 00..0f.
    fn paper_key() -> [u64; 2] {
        let mut k = [0u8; 16];
        for (i, b) in k.iter_mut().enumerate() {
            *b = i as u8;
        }
        key_words(&k)
    }

    #[test]
    fn known_answer_of_the_paper() {
        // Appendix A of "SipHash: a fast short-input PRF": message 00..0e
        // (15 bytes), output a129ca6149be45e5.
        let msg: Vec<u8> = (0u8..15).collect();
        assert_eq!(siphash24(&paper_key(), &msg), 0xa129_ca61_49be_45e5);
    }

    #[test]
    fn known_answers_of_the_reference_vectors() {
        // vectors.h of the reference implementation (output bytes, i.e.
        // the u64 little-endian), messages 00..(n-1).
        let expect: [(usize, [u8; 8]); 4] = [
            (0, [0x31, 0x0e, 0x0e, 0xdd, 0x47, 0xdb, 0x6f, 0x72]),
            (1, [0xfd, 0x67, 0xdc, 0x93, 0xc5, 0x39, 0xf8, 0x74]),
            (8, [0x62, 0x24, 0x93, 0x9a, 0x79, 0xf5, 0xf5, 0x93]),
            (63, [0x72, 0x45, 0x06, 0xeb, 0x4c, 0x32, 0x8a, 0x95]),
        ];
        for (n, out) in expect {
            let msg: Vec<u8> = (0..n as u8).collect();
            assert_eq!(siphash24(&paper_key(), &msg).to_le_bytes(), out, "length {n}");
        }
    }

    #[test]
    fn the_tag_ignores_its_own_bytes_and_covers_everything_else() {
        let key = key_words(&[7; 16]);
        let mut p: Vec<u8> = (0..100u8).collect();
        assert!(sign(&key, &mut p));
        assert!(verify(&key, &p));
        // The tag equals SipHash of the packet with the tag zeroed.
        let mut z = p.clone();
        z[TAG_OFFSET..TAG_OFFSET + TAG_LEN].fill(0);
        assert_eq!(siphash24(&key, &z).to_le_bytes(), p[TAG_OFFSET..TAG_OFFSET + TAG_LEN]);
        for i in 0..p.len() {
            let mut q = p.clone();
            q[i] ^= 1;
            assert!(!verify(&key, &q), "byte {i} not covered");
        }
        assert!(!verify(&key_words(&[8; 16]), &p));
        assert!(!verify(&key, &p[..27]));
        let mut short = p.clone();
        short.pop();
        assert!(!verify(&key, &short));
    }

    #[test]
    fn sealed_packets_parse_and_verify() {
        use crate::wire::{Fields, Header, PacketType, flags};
        let slot = AuthKey::new(3, &[9; 16], &[8; 16], true);
        let key = SendKey::of(&slot).unwrap();
        let h = Header::new(Fields {
            packet_type: PacketType::Probe,
            flags: flags::AUTH | flags::TRAIN,
            link_id: 2,
            session: 7,
            global_seq: 1,
            link_seq: 2,
            timestamp_us: 3,
        });
        let mut out = [0u8; 64];
        let n = seal(Some(&key), h, &[0xAB; 10], &mut out).unwrap();
        assert_eq!(n, AUTH_HEADER_LEN + 10);
        assert_eq!(out[1], flags::AUTH | flags::TRAIN | flags::KEY_PHASE);
        assert!(verify(&slot.send, &out[..n]));
        let (fields, payload) = Header::parse(&out[..n], 7, 8).unwrap();
        assert_eq!((fields.link_id, payload), (2, &[0xAB; 10][..]));
        let n = seal(None, h, &[0xAB; 10], &mut out).unwrap();
        assert_eq!((n, out[1], out[3]), (30, flags::TRAIN, 5));
        assert!(seal(Some(&key), h, &[0; 40], &mut out).is_err());
    }

    #[test]
    fn keys_by_slot() {
        let k = AuthKey::new(5, &[1; 16], &[2; 16], true);
        assert!(k.valid() && k.sends());
        assert_eq!(k.phase(), 1);
        assert_eq!(k.send, [0x0101_0101_0101_0101; 2]);
        assert!(!AuthKey::default().valid() && !AuthKey::default().sends());
        assert_eq!(size_of::<AuthKey>(), 40);
    }
}
