//! The session handshake: Noise `IK` over X25519, ChaCha20-Poly1305 and
//! BLAKE2s, through the `snow` crate. No I/O here: both sides are plain
//! state machines fed bytes and the time, so the tests run them against
//! each other in memory.
//!
//! * The edge (initiator) knows its own static key and the hub's public
//!   key; its first message carries its static key encrypted to the hub and
//!   a timestamp.
//! * The hub (responder) learns the edge's static key from that message and
//!   answers only if the key is on its allowlist for the session id the
//!   packet names, and the timestamp is newer than the last one it accepted
//!   from that car (so a captured initiation replayed later is refused —
//!   Noise IK alone would accept it, see docs/WIRE.md).
//! * After the second message both hold the same two transport keys (Noise's
//!   `Split()`): one per direction. They become the data plane's
//!   [`SessionKeys`]; Noise's own transport mode is not used, so those keys
//!   are used with one construction only.

use std::fmt;

use snow::{HandshakeState, params::NoiseParams};

use super::{
    keys::{KEY_LEN, PublicKey, StaticKey},
    message::{
        self, INITIATION_PAYLOAD, Message, NOISE_INITIATION_LEN, NOISE_RESPONSE_LEN, RESPONSE_LEN,
        RESPONSE_PAYLOAD,
    },
};

/// The Noise protocol name.
pub const PATTERN: &str = "Noise_IK_25519_ChaChaPoly_BLAKE2s";
/// Mixed into the handshake hash with the session id and the initiation's
/// index: a message made for another protocol, version or session does not
/// verify here, and neither does one whose clear-text index was changed (a
/// changed index would otherwise be answered, burning the initiation's
/// timestamp, with a response the edge does not match).
const PROLOGUE: &[u8] = b"strata handshake v1";

/// The protocol's parameters (the name is a constant that parses).
pub(super) fn params() -> NoiseParams {
    #[allow(clippy::expect_used)]
    PATTERN.parse().expect("a valid Noise pattern name")
}

fn prologue(session: u32, index: u32) -> [u8; PROLOGUE.len() + 8] {
    let mut p = [0u8; PROLOGUE.len() + 8];
    p[..PROLOGUE.len()].copy_from_slice(PROLOGUE);
    p[PROLOGUE.len()..PROLOGUE.len() + 4].copy_from_slice(&session.to_be_bytes());
    p[PROLOGUE.len() + 4..].copy_from_slice(&index.to_be_bytes());
    p
}

/// One direction's data key per side, and the epoch that names them.
///
/// `tx` protects what this side sends, `rx` what it receives: the edge's
/// `tx` is the hub's `rx` and the other way round. The epoch is chosen by the
/// hub, one more than the car's current epoch (or the hub's last for the
/// car, if newer) and never 0: consecutive epochs alternate their low bit,
/// which the data plane uses as the key slot, so the previous keys stay
/// installed beside the new ones for the overlap.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKeys {
    /// Names this pair of keys.
    pub epoch: u32,
    /// Key for packets this side sends.
    pub tx: [u8; KEY_LEN],
    /// Key for packets this side receives.
    pub rx: [u8; KEY_LEN],
}

impl fmt::Debug for SessionKeys {
    // Keys never reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionKeys {{ epoch: {}, .. }}", self.epoch)
    }
}

/// Why a handshake message was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// Not a well-formed handshake message.
    #[error("malformed: {0}")]
    Malformed(#[from] message::ParseError),
    /// A message of the other direction.
    #[error("a {0} is not expected on this side")]
    Unexpected(&'static str),
    /// Noise refused it: tampered, for another key or session, or garbage.
    #[error("does not verify (tampered, or made for another key or session)")]
    BadMessage,
    /// A static key not on the allowlist.
    #[error("car key {0} is not on the allowlist")]
    UnknownKey(PublicKey),
    /// An allowlisted car asking for a session id it may not use.
    #[error("car {car} may use session {allowed}, not {asked}")]
    WrongSession {
        /// The car's name.
        car: String,
        /// What its allowlist entry says.
        allowed: u32,
        /// What the packet said.
        asked: u32,
    },
    /// The initiation's timestamp is not newer than the last accepted one.
    #[error("car {car}: initiation is not newer than the last accepted (a replay, or its clock went back)")]
    Replayed {
        /// The car's name.
        car: String,
    },
    /// A response that answers no initiation of ours.
    #[error("response to initiation {0}, which is not outstanding")]
    NotOutstanding(u32),
    /// The Noise library failed for a reason of its own (no randomness).
    #[error("noise: {0}")]
    Noise(#[from] snow::Error),
}

impl HandshakeError {
    /// The rejection reason as a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) | Self::Unexpected(_) => "malformed",
            Self::BadMessage => "bad_message",
            Self::UnknownKey(_) => "unknown_key",
            Self::WrongSession { .. } => "wrong_session",
            Self::Replayed { .. } => "replayed",
            Self::NotOutstanding(_) => "not_outstanding",
            Self::Noise(_) => "internal",
        }
    }
}

/// What the edge got from a completed handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Established {
    /// The data keys.
    pub keys: SessionKeys,
    /// The rekey interval the hub asked for, seconds (0: none).
    pub rekey_interval_s: u32,
}

/// The edge's side.
pub struct Initiator {
    key: StaticKey,
    hub: PublicKey,
    session: u32,
    /// The initiation in flight: its index and Noise state. A new one
    /// replaces it (its answer, if it comes late, is refused).
    pending: Option<(u32, HandshakeState)>,
    /// The last timestamp sent: the next is always larger, even if the
    /// clock stands still or steps back a little.
    last_timestamp: u64,
    /// The epoch of the keys held (0: none), reported in the initiation.
    epoch: u32,
}

impl fmt::Debug for Initiator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Initiator")
            .field("public", &self.key.public)
            .field("hub", &self.hub)
            .field("session", &self.session)
            .field("pending", &self.pending.as_ref().map(|(i, _)| i))
            .finish()
    }
}

impl Initiator {
    /// An edge with `key` for the hub whose public key is `hub`.
    pub fn new(key: StaticKey, hub: PublicKey, session: u32) -> Self {
        Self { key, hub, session, pending: None, last_timestamp: 0, epoch: 0 }
    }

    /// This edge's public key.
    pub fn public(&self) -> PublicKey {
        self.key.public
    }

    /// A new initiation at `unix_ns` (the wall clock, ns since the Unix
    /// epoch); `index` names it (the response echoes it).
    pub fn initiate(
        &mut self,
        unix_ns: u64,
        index: u32,
    ) -> Result<[u8; message::INITIATION_LEN], HandshakeError> {
        let prologue = prologue(self.session, index);
        let mut state = snow::Builder::new(params())
            .local_private_key(self.key.private())?
            .remote_public_key(&self.hub.0)?
            .prologue(&prologue)?
            .build_initiator()?;
        let timestamp = unix_ns.max(self.last_timestamp + 1);
        let mut payload = [0u8; INITIATION_PAYLOAD];
        payload[..8].copy_from_slice(&timestamp.to_be_bytes());
        payload[8..].copy_from_slice(&self.epoch.to_be_bytes());
        let mut noise = [0u8; NOISE_INITIATION_LEN];
        let n = state.write_message(&payload, &mut noise)?;
        debug_assert_eq!(n, NOISE_INITIATION_LEN);
        self.last_timestamp = timestamp;
        self.pending = Some((index, state));
        Ok(message::initiation(index, &noise))
    }

    /// Whether an initiation waits for its response.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Takes the hub's response: the session's keys, or why not. A response
    /// for another index is ignored and leaves the initiation outstanding;
    /// one for this index that does not verify ends the attempt (snow's
    /// state cannot be rewound), and the edge's retry follows.
    pub fn on_response(&mut self, bytes: &[u8]) -> Result<Established, HandshakeError> {
        let Message::Response { receiver, noise } = message::parse(bytes)? else {
            return Err(HandshakeError::Unexpected("initiation"));
        };
        let Some((index, _)) = &self.pending else { return Err(HandshakeError::NotOutstanding(receiver)) };
        if *index != receiver {
            return Err(HandshakeError::NotOutstanding(receiver));
        }
        let Some((_, mut state)) = self.pending.take() else {
            return Err(HandshakeError::NotOutstanding(receiver));
        };
        let mut payload = [0u8; RESPONSE_PAYLOAD + 16];
        match state.read_message(noise, &mut payload) {
            Ok(n) if n == RESPONSE_PAYLOAD && state.is_handshake_finished() => {}
            Ok(_) | Err(_) => {
                // snow's state cannot be rewound: the edge retries with a
                // new initiation soon (see `session`), so a forged response
                // costs at most one retry interval.
                return Err(HandshakeError::BadMessage);
            }
        }
        let epoch = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
        let rekey_interval_s = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
        let (to_hub, to_edge) = state.dangerously_get_raw_split();
        self.epoch = epoch;
        Ok(Established { keys: SessionKeys { epoch, tx: to_hub, rx: to_edge }, rekey_interval_s })
    }
}

/// A car the hub admits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Car {
    /// Its name (logs, status, metrics).
    pub name: String,
    /// Its static public key.
    pub public: PublicKey,
    /// The session id it may use.
    pub session: u32,
}

/// What the hub remembers of a car.
#[derive(Clone, Debug)]
struct CarState {
    car: Car,
    /// The newest initiation timestamp accepted (0: none yet).
    last_timestamp: u64,
    /// The epoch of its current keys (0: none yet).
    epoch: u32,
}

/// A car the hub admitted, and what to send back.
#[derive(Clone, Debug)]
pub struct Admitted {
    /// The car's name.
    pub car: String,
    /// Its key.
    pub public: PublicKey,
    /// The response to send to where the initiation came from.
    pub reply: [u8; RESPONSE_LEN],
    /// The data keys, from the hub's point of view.
    pub keys: SessionKeys,
}

/// The hub's side.
pub struct Responder {
    key: StaticKey,
    cars: Vec<CarState>,
    /// Sent to every car as the rekey interval it should use (0: its own).
    rekey_interval_s: u32,
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder").field("public", &self.key.public).field("cars", &self.cars.len()).finish()
    }
}

impl Responder {
    /// A hub with `key` admitting `cars`.
    pub fn new(key: StaticKey, cars: Vec<Car>, rekey_interval_s: u32) -> Self {
        let cars = cars.into_iter().map(|car| CarState { car, last_timestamp: 0, epoch: 0 }).collect();
        Self { key, cars, rekey_interval_s }
    }

    /// Answers an initiation that came in a packet of `session`: the car
    /// admitted, or why not. Nothing changes for a refused one.
    pub fn on_initiation(&mut self, session: u32, bytes: &[u8]) -> Result<Admitted, HandshakeError> {
        let Message::Initiation { sender, noise } = message::parse(bytes)? else {
            return Err(HandshakeError::Unexpected("response"));
        };
        let prologue = prologue(session, sender);
        let mut state = snow::Builder::new(params())
            .local_private_key(self.key.private())?
            .prologue(&prologue)?
            .build_responder()?;
        let mut payload = [0u8; INITIATION_PAYLOAD + 16];
        match state.read_message(noise, &mut payload) {
            Ok(INITIATION_PAYLOAD) => {}
            _ => return Err(HandshakeError::BadMessage),
        }
        let public = state
            .get_remote_static()
            .and_then(|k| <[u8; KEY_LEN]>::try_from(k).ok())
            .map(PublicKey)
            .ok_or(HandshakeError::BadMessage)?;
        let entry = self
            .cars
            .iter_mut()
            .find(|c| c.car.public == public)
            .ok_or(HandshakeError::UnknownKey(public))?;
        if entry.car.session != session {
            return Err(HandshakeError::WrongSession {
                car: entry.car.name.clone(),
                allowed: entry.car.session,
                asked: session,
            });
        }
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&payload[..8]);
        let timestamp = u64::from_be_bytes(ts);
        if timestamp <= entry.last_timestamp {
            return Err(HandshakeError::Replayed { car: entry.car.name.clone() });
        }
        // One past the newer of the car's current epoch (which it reports:
        // after a hub restart the hub knows none) and the hub's last, so
        // consecutive epochs alternate their low bit — the data plane's key
        // slot — and the keys still accepted for the overlap keep theirs.
        let reported = u32::from_be_bytes([payload[8], payload[9], payload[10], payload[11]]);
        let epoch = match entry.epoch.max(reported).wrapping_add(1) {
            // 0 means "no keys"; 2 keeps the alternation after u32::MAX.
            0 => 2,
            e => e,
        };
        let mut reply_payload = [0u8; RESPONSE_PAYLOAD];
        reply_payload[..4].copy_from_slice(&epoch.to_be_bytes());
        reply_payload[4..].copy_from_slice(&self.rekey_interval_s.to_be_bytes());
        let mut out = [0u8; NOISE_RESPONSE_LEN];
        let n = state.write_message(&reply_payload, &mut out)?;
        debug_assert_eq!(n, NOISE_RESPONSE_LEN);
        let (to_hub, to_edge) = state.dangerously_get_raw_split();
        // Committed only now that the answer exists.
        entry.last_timestamp = timestamp;
        entry.epoch = epoch;
        Ok(Admitted {
            car: entry.car.name.clone(),
            public,
            reply: message::response(sender, &out),
            keys: SessionKeys { epoch, tx: to_edge, rx: to_hub },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000_000_000;

    fn pair(session: u32) -> (Initiator, Responder, StaticKey) {
        let hub = StaticKey::generate().unwrap();
        let car = StaticKey::generate().unwrap();
        let cars = vec![Car { name: "car7".into(), public: car.public, session }];
        (Initiator::new(car.clone(), hub.public, session), Responder::new(hub, cars, 600), car)
    }

    #[test]
    fn a_good_handshake_gives_both_sides_mirrored_keys() {
        let (mut edge, mut hub, car) = pair(7);
        let init = edge.initiate(NOW, 42).unwrap();
        let admitted = hub.on_initiation(7, &init).unwrap();
        assert_eq!((admitted.car.as_str(), admitted.public), ("car7", car.public));
        let est = edge.on_response(&admitted.reply).unwrap();
        assert_eq!(est.keys.epoch, admitted.keys.epoch);
        assert_eq!(est.keys.tx, admitted.keys.rx);
        assert_eq!(est.keys.rx, admitted.keys.tx);
        assert_ne!(est.keys.tx, est.keys.rx);
        assert_eq!(est.rekey_interval_s, 600);
        assert!(!edge.is_pending());
        assert_eq!(format!("{:?}", est.keys), format!("SessionKeys {{ epoch: {}, .. }}", est.keys.epoch));
    }

    #[test]
    fn an_unknown_car_is_refused() {
        let (_, mut hub, _) = pair(7);
        let stranger = StaticKey::generate().unwrap();
        let mut edge = Initiator::new(stranger.clone(), hub.key.public, 7);
        let err = hub.on_initiation(7, &edge.initiate(NOW, 1).unwrap()).unwrap_err();
        assert!(matches!(err, HandshakeError::UnknownKey(k) if k == stranger.public), "{err}");
        assert_eq!(err.reason(), "unknown_key");
    }

    #[test]
    fn a_car_keeps_to_its_session() {
        let (mut edge, mut hub, _) = pair(7);
        // The edge is configured for session 8 as well: the prologue matches,
        // the allowlist does not.
        edge.session = 8;
        let err = hub.on_initiation(8, &edge.initiate(NOW, 1).unwrap()).unwrap_err();
        assert_eq!(err.reason(), "wrong_session", "{err}");
        // A packet whose header names another session than the edge signed.
        edge.session = 7;
        let err = hub.on_initiation(9, &edge.initiate(NOW, 2).unwrap()).unwrap_err();
        assert_eq!(err.reason(), "bad_message", "{err}");
    }

    #[test]
    fn a_tampered_message_is_refused_everywhere() {
        let (mut edge, mut hub, _) = pair(7);
        let init = edge.initiate(NOW, 1).unwrap();
        for i in [0, 4, 5, 40, 100, init.len() - 1] {
            let mut bad = init;
            bad[i] ^= 1;
            let err = hub.on_initiation(7, &bad).unwrap_err();
            assert!(matches!(err.reason(), "bad_message" | "malformed"), "byte {i}: {err}");
        }
        let admitted = hub.on_initiation(7, &init).unwrap();
        let mut bad = admitted.reply;
        bad[30] ^= 0x80;
        assert_eq!(edge.on_response(&bad).unwrap_err().reason(), "bad_message");
        // The forged response consumed the attempt: the edge starts anew.
        assert_eq!(edge.on_response(&admitted.reply).unwrap_err().reason(), "not_outstanding");
        let again = edge.initiate(NOW + 1, 2).unwrap();
        let admitted = hub.on_initiation(7, &again).unwrap();
        assert!(edge.on_response(&admitted.reply).is_ok());
    }

    #[test]
    fn a_replayed_initiation_creates_nothing() {
        let (mut edge, mut hub, _) = pair(7);
        let init = edge.initiate(NOW, 1).unwrap();
        let first = hub.on_initiation(7, &init).unwrap();
        let err = hub.on_initiation(7, &init).unwrap_err();
        assert_eq!(err.reason(), "replayed", "{err}");
        // An older initiation that never arrived is refused once a newer one was.
        let mut late = Initiator::new(edge.key.clone(), hub.key.public, 7);
        let old = late.initiate(NOW - 1_000, 9).unwrap();
        assert_eq!(hub.on_initiation(7, &old).unwrap_err().reason(), "replayed");
        assert!(edge.on_response(&first.reply).is_ok());
    }

    #[test]
    fn responses_to_other_initiations_are_refused() {
        let (mut edge, mut hub, _) = pair(7);
        let a = edge.initiate(NOW, 1).unwrap();
        let admitted_a = hub.on_initiation(7, &a).unwrap();
        let b = edge.initiate(NOW + 1, 2).unwrap();
        // The answer to a superseded initiation does not verify against the new one.
        assert_eq!(edge.on_response(&admitted_a.reply).unwrap_err().reason(), "not_outstanding");
        let admitted_b = hub.on_initiation(7, &b).unwrap();
        let est = edge.on_response(&admitted_b.reply).unwrap();
        assert!(est.keys.epoch > admitted_a.keys.epoch);
        assert_eq!(edge.on_response(&admitted_b.reply).unwrap_err().reason(), "not_outstanding");
        assert_eq!(edge.on_response(&a).unwrap_err().reason(), "malformed");
    }

    #[test]
    fn epochs_alternate_their_low_bit_across_restarts_of_either_side() {
        let (mut edge, mut hub, car) = pair(7);
        let mut last = 0;
        let mut t = NOW;
        let mut round = |edge: &mut Initiator, hub: &mut Responder| {
            t += 1;
            let admitted = hub.on_initiation(7, &edge.initiate(t, 1).unwrap()).unwrap();
            edge.on_response(&admitted.reply).unwrap().keys.epoch
        };
        for _ in 0..3 {
            let epoch = round(&mut edge, &mut hub);
            assert_eq!(epoch, last + 1);
            last = epoch;
        }
        // The hub restarts: the edge reports the epoch of the keys it holds.
        let cars = hub.cars.iter().map(|c| c.car.clone()).collect();
        let mut hub = Responder::new(hub.key.clone(), cars, 600);
        assert_eq!(round(&mut edge, &mut hub), last + 1);
        last += 1;
        // The edge restarts: the hub remembers the car's epoch.
        let mut edge = Initiator::new(car, hub.key.public, 7);
        assert_eq!(round(&mut edge, &mut hub), last + 1);
    }
}
