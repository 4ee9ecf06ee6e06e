//! Strata wire format, version 1 (see `docs/WIRE.md`).
//!
//! Every tunnelled packet is `outer IPv4 | UDP | Strata header | payload`. For
//! data packets the payload is the inner IPv4 or IPv6 packet; probes, feedback
//! and control messages carry controller payloads and are delivered to the
//! controller's UDP socket instead of the tunnel device.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-------+-------+---------------+---------------+---------------+
//! |version| type  |     flags     |    link id    |  header words |
//! +-------+-------+---------------+---------------+---------------+
//! |                          session id                           |
//! +---------------------------------------------------------------+
//! |                        global sequence                        |
//! +---------------------------------------------------------------+
//! |                       per-link sequence                       |
//! +---------------------------------------------------------------+
//! |               send timestamp (µs, CLOCK_TAI, mod 2^32)         |
//! +---------------------------------------------------------------+
//! |        extension words (header words > 5), e.g. auth tag      |
//! ```
//!
//! `header words` is the header length in 32-bit words (5 in v1). Receivers
//! skip words they do not understand, so an authentication tag or other
//! extension can be appended later without a new version.

use crate::drop::DropReason;

/// The only version this build speaks.
pub const VERSION: u8 = 1;
/// Length of the v1 header without extensions, in bytes.
pub const HEADER_LEN: usize = 20;
/// Length of the v1 header without extensions, in 32-bit words.
pub const HEADER_WORDS: u8 = (HEADER_LEN / 4) as u8;
/// The largest header the receiver accepts (15 words: 40 bytes of extensions).
pub const MAX_HEADER_WORDS: u8 = 15;

/// What a packet carries.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketType {
    /// An inner IP packet, handled entirely in the kernel.
    Data = 0,
    /// An in-band probe from a controller.
    Probe = 1,
    /// The answer to a probe.
    ProbeReply = 2,
    /// Per-link receive feedback (hub to edge).
    Feedback = 3,
    /// Session control.
    Control = 4,
    /// A session handshake message (Noise IK, see docs/WIRE.md,
    /// "Handshake"); the controllers exchange it, the kernel hands it up.
    Handshake = 5,
}

impl PacketType {
    /// Decodes the type nibble.
    #[inline(always)]
    pub const fn from_nibble(n: u8) -> Option<Self> {
        match n {
            0 => Some(Self::Data),
            1 => Some(Self::Probe),
            2 => Some(Self::ProbeReply),
            3 => Some(Self::Feedback),
            4 => Some(Self::Control),
            5 => Some(Self::Handshake),
            _ => None,
        }
    }
}

/// Traffic class carried in the two low bits of the flags byte.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrafficClass {
    /// Everything not marked otherwise.
    BestEffort = 0,
    /// Video (DSCP AF41, AF42, AF43).
    Video = 1,
    /// Telemetry and control traffic that must arrive (DSCP EF, CS5, CS6, CS7).
    Critical = 2,
    /// Reserved for later use.
    Reserved = 3,
}

impl TrafficClass {
    /// The default class of an inner packet from its DSCP, after RFC 4594's
    /// service classes: EF (46, telephony) and CS5–CS7 (40, 48, 56:
    /// signalling, network control) critical, AF41–43 (34, 36, 38:
    /// multimedia conferencing) video, the rest best effort. The kernel reads
    /// it from the controller's table (`crate::class`), which starts from this.
    #[inline(always)]
    pub const fn from_dscp(dscp: u8) -> Self {
        match dscp {
            46 | 40 | 48 | 56 => Self::Critical,
            34 | 36 | 38 => Self::Video,
            _ => Self::BestEffort,
        }
    }

    /// The classes a sender gives, as named in configuration, status and metrics.
    pub const ALL: [Self; 3] = [Self::Critical, Self::Video, Self::BestEffort];

    /// The name in configuration, status and metrics (`class="…"`); reserved
    /// is reported as best effort.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Critical => "critical",
            Self::Video => "video",
            Self::BestEffort | Self::Reserved => "best_effort",
        }
    }

    /// Decodes the two class bits.
    #[inline(always)]
    pub const fn from_bits(bits: u8) -> Self {
        match bits & flags::CLASS_MASK {
            0 => Self::BestEffort,
            1 => Self::Video,
            2 => Self::Critical,
            _ => Self::Reserved,
        }
    }
}

/// Bits of the flags byte.
pub mod flags {
    /// Traffic class (see [`super::TrafficClass`]).
    pub const CLASS_MASK: u8 = 0b0000_0011;
    /// This packet is a deliberate duplicate of one sent on another link.
    pub const DUPLICATE: u8 = 0b0000_0100;
    /// An authentication tag follows in the extension words.
    pub const AUTH: u8 = 0b0000_1000;
    /// A probe that is one packet of a train (see docs/WIRE.md), or the
    /// reply to one: the reply carries the hub's receive time instead of the
    /// echoed payload.
    pub const TRAIN: u8 = 0b0001_0000;
    /// With [`AUTH`]: the key phase, the low bit of the key epoch the tag
    /// was computed with (`crate::auth`), so a receiver holding two epochs
    /// during a rotation knows which key to check it with.
    pub const KEY_PHASE: u8 = 0b0010_0000;
}

/// The Strata header as it lies on the wire.
///
/// Multi-byte fields hold **network byte order** values; use the accessors.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Version in the high nibble, [`PacketType`] in the low nibble.
    pub ver_type: u8,
    /// See [`flags`].
    pub flags: u8,
    /// Which link the sender put this packet on.
    pub link_id: u8,
    /// Header length in 32-bit words, extensions included.
    pub header_words: u8,
    /// Session id, big endian.
    pub session_be: u32,
    /// Global sequence across all links, big endian.
    pub global_seq_be: u32,
    /// Sequence on this link, big endian.
    pub link_seq_be: u32,
    /// Send time in µs of CLOCK_TAI modulo 2^32, big endian.
    pub timestamp_be: u32,
}

const _: () = assert!(size_of::<Header>() == HEADER_LEN);

/// The fields of a header, in host order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fields {
    /// Packet type.
    pub packet_type: PacketType,
    /// Flags byte.
    pub flags: u8,
    /// Link id.
    pub link_id: u8,
    /// Session id.
    pub session: u32,
    /// Global sequence.
    pub global_seq: u32,
    /// Per-link sequence.
    pub link_seq: u32,
    /// Send timestamp, µs mod 2^32.
    pub timestamp_us: u32,
}

impl Header {
    /// A v1 header without extensions.
    #[inline(always)]
    pub const fn new(fields: Fields) -> Self {
        let Fields { packet_type, flags, link_id, session, global_seq, link_seq, timestamp_us } = fields;
        Self {
            ver_type: (VERSION << 4) | packet_type as u8,
            flags,
            link_id,
            header_words: HEADER_WORDS,
            session_be: session.to_be(),
            global_seq_be: global_seq.to_be(),
            link_seq_be: link_seq.to_be(),
            timestamp_be: timestamp_us.to_be(),
        }
    }

    /// Version nibble.
    #[inline(always)]
    pub const fn version(&self) -> u8 {
        self.ver_type >> 4
    }

    /// Session id in host order.
    #[inline(always)]
    pub const fn session(&self) -> u32 {
        u32::from_be(self.session_be)
    }

    /// Global sequence in host order.
    #[inline(always)]
    pub const fn global_seq(&self) -> u32 {
        u32::from_be(self.global_seq_be)
    }

    /// Per-link sequence in host order.
    #[inline(always)]
    pub const fn link_seq(&self) -> u32 {
        u32::from_be(self.link_seq_be)
    }

    /// Send timestamp in host order.
    #[inline(always)]
    pub const fn timestamp_us(&self) -> u32 {
        u32::from_be(self.timestamp_be)
    }

    /// Header length in bytes, extensions included.
    #[inline(always)]
    pub const fn byte_len(&self) -> usize {
        self.header_words as usize * 4
    }

    /// Checks a received header; `available` is the number of bytes from the
    /// start of the header to the end of the UDP payload.
    ///
    /// This one function decides for both the kernel receive path and
    /// userspace, so they cannot disagree on what is malformed.
    #[inline(always)]
    pub const fn validate(
        &self,
        available: usize,
        session: u32,
        max_links: u8,
    ) -> Result<PacketType, DropReason> {
        if self.version() != VERSION {
            return Err(DropReason::BadVersion);
        }
        let Some(packet_type) = PacketType::from_nibble(self.ver_type & 0x0f) else {
            return Err(DropReason::BadType);
        };
        if self.header_words < HEADER_WORDS
            || self.header_words > MAX_HEADER_WORDS
            || self.byte_len() > available
        {
            return Err(DropReason::BadHeaderLen);
        }
        if self.session() != session {
            return Err(DropReason::WrongSession);
        }
        if self.link_id >= max_links {
            return Err(DropReason::BadLink);
        }
        Ok(packet_type)
    }

    /// The fields of a header that passed [`Header::validate`].
    pub const fn fields(&self, packet_type: PacketType) -> Fields {
        Fields {
            packet_type,
            flags: self.flags,
            link_id: self.link_id,
            session: self.session(),
            global_seq: self.global_seq(),
            link_seq: self.link_seq(),
            timestamp_us: self.timestamp_us(),
        }
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `buf`.
    pub fn encode(&self, buf: &mut [u8]) -> Result<(), DropReason> {
        let Some(out) = buf.get_mut(..HEADER_LEN) else {
            return Err(DropReason::Truncated);
        };
        let Self {
            ver_type,
            flags,
            link_id,
            header_words,
            session_be,
            global_seq_be,
            link_seq_be,
            timestamp_be,
        } = *self;
        out[0] = ver_type;
        out[1] = flags;
        out[2] = link_id;
        out[3] = header_words;
        out[4..8].copy_from_slice(&u32::from_be(session_be).to_be_bytes());
        out[8..12].copy_from_slice(&u32::from_be(global_seq_be).to_be_bytes());
        out[12..16].copy_from_slice(&u32::from_be(link_seq_be).to_be_bytes());
        out[16..20].copy_from_slice(&u32::from_be(timestamp_be).to_be_bytes());
        Ok(())
    }

    /// Reads a header from the start of `buf` without validating it.
    pub fn decode(buf: &[u8]) -> Result<Self, DropReason> {
        let Some(b) = buf.get(..HEADER_LEN) else {
            return Err(DropReason::Truncated);
        };
        let word = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]).to_be();
        Ok(Self {
            ver_type: b[0],
            flags: b[1],
            link_id: b[2],
            header_words: b[3],
            session_be: word(4),
            global_seq_be: word(8),
            link_seq_be: word(12),
            timestamp_be: word(16),
        })
    }

    /// Decodes and validates `buf` (header and payload after the UDP header),
    /// returning the fields and the payload after any extension words.
    pub fn parse(buf: &[u8], session: u32, max_links: u8) -> Result<(Fields, &[u8]), DropReason> {
        let header = Self::decode(buf)?;
        let packet_type = header.validate(buf.len(), session, max_links)?;
        Ok((header.fields(packet_type), &buf[header.byte_len()..]))
    }
}

/// The payload of a feedback packet: what the receiver's kernel counted on
/// one link, cumulative since it started (so a lost feedback packet loses
/// nothing but time).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeedbackPayload {
    /// Data packets received on the link.
    pub rx_packets: u64,
    /// Bytes received on the link.
    pub rx_bytes: u64,
    /// Packets missing from the link's sequence.
    pub lost: u64,
    /// Sum of biased one-way delays, µs (`maps::OWD_BIAS_US` added to each).
    pub owd_sum_us: u64,
    /// Samples in `owd_sum_us`.
    pub owd_count: u64,
    /// Packets that arrived after a higher sequence on the link (reordering).
    pub late: u64,
    /// The per-link sequence after the highest received (highest + 1, as a
    /// u64 so that it never wraps to the "none" value), 0 before any packet:
    /// an acknowledgement. With it the sender's kernel counts what it sent
    /// on the link since, and so knows the link's real backlog rather than
    /// the one its rate model predicts (see `maps::LinkTx::acked_seq`).
    pub next_seq: u64,
    /// Bytes of the packets that arrived queued behind their predecessor on
    /// the link: sent early enough (send timestamp + the link's one-way
    /// delay floor) to have reached the bottleneck before the previous
    /// packet arrived. Such a packet waited for the link, so the time since
    /// the previous arrival is the link's own service time for it.
    pub queued_bytes: u64,
    /// The arrival gaps of those packets summed, µs: the time the link was
    /// seen busy. `queued_bytes` over it is the link's capacity, measured
    /// only while it had more to carry than it could.
    pub queued_us: u64,
}

impl FeedbackPayload {
    /// Encoded length: nine big-endian u64.
    pub const LEN: usize = 72;
    /// Length of the first revision, without `late` and `next_seq` (decoded
    /// with both 0). The second revision (48 bytes) lacks `next_seq` too,
    /// the third (56 bytes) the queued counts.
    pub const LEN_WITHOUT_LATE: usize = 40;
    /// Length of the third revision, without the queued counts: they decode
    /// as 0, which a sender reads as it reads "nothing queued" — no
    /// evidence of the link's capacity from the receiver.
    pub const LEN_WITHOUT_QUEUED: usize = 56;

    /// Writes the payload into the first [`Self::LEN`] bytes of `buf`.
    pub fn encode(&self, buf: &mut [u8]) -> Result<(), DropReason> {
        let Some(out) = buf.get_mut(..Self::LEN) else { return Err(DropReason::Truncated) };
        let Self {
            rx_packets,
            rx_bytes,
            lost,
            owd_sum_us,
            owd_count,
            late,
            next_seq,
            queued_bytes,
            queued_us,
        } = *self;
        for (chunk, v) in out.chunks_exact_mut(8).zip([
            rx_packets,
            rx_bytes,
            lost,
            owd_sum_us,
            owd_count,
            late,
            next_seq,
            queued_bytes,
            queued_us,
        ]) {
            chunk.copy_from_slice(&v.to_be_bytes());
        }
        Ok(())
    }

    /// Reads a payload (any revision; fields it lacks are 0).
    pub fn decode(buf: &[u8]) -> Result<Self, DropReason> {
        if buf.len() < Self::LEN_WITHOUT_LATE {
            return Err(DropReason::Truncated);
        }
        let v = |i: usize| {
            let mut w = [0u8; 8];
            match buf.get(i * 8..i * 8 + 8) {
                Some(b) => w.copy_from_slice(b),
                None => return 0,
            }
            u64::from_be_bytes(w)
        };
        Ok(Self {
            rx_packets: v(0),
            rx_bytes: v(1),
            lost: v(2),
            owd_sum_us: v(3),
            owd_count: v(4),
            late: v(5),
            next_seq: v(6),
            queued_bytes: v(7),
            queued_us: v(8),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn feedback_round_trip(a: u64, b: u64, c: u64, d: u64, e: u64, g: u64, n: u64, qb: u64, qt: u64) {
            let f = FeedbackPayload {
                rx_packets: a, rx_bytes: b, lost: c, owd_sum_us: d, owd_count: e, late: g, next_seq: n,
                queued_bytes: qb, queued_us: qt,
            };
            let mut buf = [0u8; FeedbackPayload::LEN];
            f.encode(&mut buf).unwrap();
            prop_assert_eq!(FeedbackPayload::decode(&buf).unwrap(), f);
            // Earlier revisions still decode, without the fields they lack.
            let unqueued = FeedbackPayload { queued_bytes: 0, queued_us: 0, ..f };
            prop_assert_eq!(FeedbackPayload::decode(&buf[..FeedbackPayload::LEN_WITHOUT_QUEUED]).unwrap(), unqueued);
            prop_assert_eq!(FeedbackPayload::decode(&buf[..48]).unwrap(), FeedbackPayload { next_seq: 0, ..unqueued });
            prop_assert_eq!(
                FeedbackPayload::decode(&buf[..40]).unwrap(),
                FeedbackPayload { late: 0, next_seq: 0, ..unqueued }
            );
            prop_assert!(FeedbackPayload::decode(&buf[..39]).is_err());
        }
    }

    fn any_type() -> impl Strategy<Value = PacketType> {
        (0u8..6).prop_map(|n| PacketType::from_nibble(n).unwrap())
    }

    proptest! {
        #[test]
        fn round_trip(t in any_type(), flags: u8, link in 0u8..8, session: u32, g: u32, l: u32, ts: u32,
                      payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let fields = Fields { packet_type: t, flags, link_id: link, session, global_seq: g, link_seq: l, timestamp_us: ts };
            let mut buf = [0u8; HEADER_LEN + 64];
            Header::new(fields).encode(&mut buf).unwrap();
            buf[HEADER_LEN..HEADER_LEN + payload.len()].copy_from_slice(&payload);
            let (got, rest) = Header::parse(&buf[..HEADER_LEN + payload.len()], session, 8).unwrap();
            prop_assert_eq!(got, fields);
            prop_assert_eq!(rest, &payload[..]);
        }

        #[test]
        fn any_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..48), session: u32) {
            let _ = Header::parse(&buf, session, 8);
        }

        #[test]
        fn memory_layout_matches_encoding(t in any_type(), flags: u8, link: u8, session: u32, g: u32, l: u32, ts: u32) {
            // The kernel reads the header by casting packet bytes to `Header`;
            // userspace uses `encode`. Both must give the same bytes.
            let h = Header::new(Fields { packet_type: t, flags, link_id: link, session, global_seq: g, link_seq: l, timestamp_us: ts });
            let mut encoded = [0u8; HEADER_LEN];
            h.encode(&mut encoded).unwrap();
            // SAFETY: `Header` is `repr(C)`, 20 bytes, integer fields only.
            let raw: [u8; HEADER_LEN] = unsafe { core::mem::transmute(h) };
            prop_assert_eq!(raw, encoded);
        }
    }

    #[test]
    fn wire_example_is_stable() {
        let h = Header::new(Fields {
            packet_type: PacketType::Data,
            flags: TrafficClass::Video as u8,
            link_id: 2,
            session: 0x0102_0304,
            global_seq: 0xA0B0_C0D0,
            link_seq: 7,
            timestamp_us: 0x1122_3344,
        });
        let mut b = [0u8; HEADER_LEN];
        h.encode(&mut b).unwrap();
        assert_eq!(
            b,
            [0x10, 0x01, 0x02, 0x05, 1, 2, 3, 4, 0xA0, 0xB0, 0xC0, 0xD0, 0, 0, 0, 7, 0x11, 0x22, 0x33, 0x44]
        );
    }

    #[test]
    fn rejects_each_malformed_case() {
        let good = Header::new(Fields {
            packet_type: PacketType::Probe,
            flags: 0,
            link_id: 1,
            session: 9,
            global_seq: 0,
            link_seq: 0,
            timestamp_us: 0,
        });
        assert_eq!(good.validate(20, 9, 8), Ok(PacketType::Probe));
        assert_eq!(good.validate(19, 9, 8), Err(DropReason::BadHeaderLen));
        assert_eq!(good.validate(20, 8, 8), Err(DropReason::WrongSession));
        assert_eq!(good.validate(20, 9, 1), Err(DropReason::BadLink));
        let mut h = good;
        h.ver_type = 0x21;
        assert_eq!(h.validate(20, 9, 8), Err(DropReason::BadVersion));
        h.ver_type = 0x1f;
        assert_eq!(h.validate(20, 9, 8), Err(DropReason::BadType));
        h = good;
        h.header_words = 4;
        assert_eq!(h.validate(64, 9, 8), Err(DropReason::BadHeaderLen));
        h.header_words = 6;
        assert_eq!(h.validate(24, 9, 8), Ok(PacketType::Probe));
        assert_eq!(Header::decode(&[0u8; 19]), Err(DropReason::Truncated));
    }
}
