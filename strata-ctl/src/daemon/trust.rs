//! The handshake in the daemon: the thin shell around [`crate::auth`].
//!
//! It holds the edge's [`EdgeSession`] or the hub's [`Responder`], its rate
//! limiter and key ring, counts what happened, and turns it into the
//! status/metrics view. It does no I/O itself: the event loop sends what it
//! returns and feeds it what arrives, so all of it stays in one task with
//! the data plane's maps.
//!
//! Where the keys go: [`install`] is called with the [`KeyRing`] whenever it
//! changes (a handshake completed, the previous keys' overlap ended).

use std::{
    collections::BTreeMap,
    time::{Duration, Instant, SystemTime},
};

use strata_common::wire::{Fields, HEADER_LEN, Header, PacketType};
use tracing::{debug, info, warn};

use crate::{
    auth::{
        handshake::{Car, HandshakeError, Initiator, Responder},
        keys::{KeyError, PublicKey},
        limiter::TokenBucket,
        message::{self, Message},
        session::{EdgeSession, KeyRing},
    },
    config::{AuthMode, Config, Role},
    dataplane::datapath::Datapath,
    inband::auth::ControlKey,
    serve::view::{AuthView, SessionView},
};

/// What the handshake's side of the daemon is.
#[derive(Debug)]
enum Mode {
    /// `[auth] mode = "none"`.
    Off,
    /// The edge.
    Edge { session: Box<EdgeSession>, hub: PublicKey },
    /// The hub.
    Hub(Box<HubSide>),
}

/// The hub's side (one session: one car at a time holds its keys).
#[derive(Debug)]
struct HubSide {
    responder: Responder,
    limiter: TokenBucket,
    ring: KeyRing,
    /// The car whose keys the ring holds.
    car: Option<(String, PublicKey)>,
    overlap: Duration,
}

/// The handshake state and its counters.
#[derive(Debug)]
pub(super) struct Trust {
    mode: Mode,
    own: Option<PublicKey>,
    last_rekey: Option<SystemTime>,
    initiations_sent: u64,
    completed: u64,
    rejected: BTreeMap<&'static str, u64>,
}

/// What to do after a handshake message.
#[derive(Debug)]
pub(super) enum Outcome {
    /// Nothing to send; the keys did not change.
    Nothing,
    /// The keys changed (the edge got its response).
    Keys,
    /// Send this datagram back to where the message came from; the keys
    /// changed (the hub admitted a car).
    Reply(Vec<u8>),
}

impl Trust {
    /// Reads the key file and the allowlist; `Err` names the file.
    pub(super) fn start(config: &Config, now: Instant) -> Result<Self, KeyError> {
        let auth = &config.auth;
        let off = Self {
            mode: Mode::Off,
            own: None,
            last_rekey: None,
            initiations_sent: 0,
            completed: 0,
            rejected: BTreeMap::new(),
        };
        let Some(key) = auth.load_key()? else {
            warn!(
                "[auth] mode = \"none\": no handshake — anyone who knows session id {} is trusted; lab and demos only",
                config.session
            );
            return Ok(off);
        };
        debug_assert_eq!(auth.mode, AuthMode::Keys);
        let own = key.public;
        let overlap = Duration::from_secs(auth.overlap_s);
        let mode = match config.role {
            Role::Edge => {
                // Validated by the configuration already.
                let hub = PublicKey::parse(auth.hub_public_key.as_deref().unwrap_or_default())?;
                let initiator = Initiator::new(key, hub, config.session);
                let rekey = Duration::from_secs(auth.rekey_interval_s);
                info!(own = %own, hub = %hub.fingerprint(), "auth: keys; handshaking with the hub");
                let session = EdgeSession::new(initiator, rekey, overlap, now)
                    .with_packet_limit(auth.rekey_after_packets);
                Mode::Edge { session: Box::new(session), hub }
            }
            Role::Hub => {
                let mut cars = Vec::new();
                for c in &auth.cars {
                    cars.push(Car {
                        name: c.name.clone(),
                        public: PublicKey::parse(&c.public_key)?,
                        session: c.session,
                    });
                }
                info!(own = %own, cars = cars.len(), "auth: keys; admitting the allowlisted cars only");
                let rekey_s = u32::try_from(auth.rekey_interval_s).unwrap_or(u32::MAX);
                Mode::Hub(Box::new(HubSide {
                    responder: Responder::new(key, cars, rekey_s),
                    limiter: TokenBucket::new(f64::from(auth.handshake_rate), auth.handshake_burst),
                    ring: KeyRing::default(),
                    car: None,
                    overlap,
                }))
            }
        };
        Ok(Self { mode, own: Some(own), ..off })
    }

    /// Edge: an initiation due now, framed for link `pick(attempt)`'s
    /// socket, with the attempt number (the caller picks the link: round
    /// robin, so a dead link does not keep the session down). Also ends an
    /// overlap that is over; true in `.1` if the keys changed so.
    pub(super) fn tick(
        &mut self,
        now: Instant,
        session_id: u32,
    ) -> (Option<(u32, [u8; message::INITIATION_LEN])>, bool) {
        match &mut self.mode {
            Mode::Off => (None, false),
            Mode::Edge { session, .. } => {
                let had = session.ring.previous.is_some();
                let due = match session.poll(now, unix_ns()) {
                    Ok(Some((bytes, attempt))) => {
                        self.initiations_sent += 1;
                        if attempt > 0 && attempt.is_multiple_of(5) {
                            warn!(
                                attempt,
                                session = session_id,
                                "auth: the hub has not answered the handshake yet"
                            );
                        }
                        Some((attempt, bytes))
                    }
                    Ok(None) => None,
                    Err(e) => {
                        warn!("auth: cannot make an initiation: {e}");
                        None
                    }
                };
                (due, had && session.ring.previous.is_none())
            }
            Mode::Hub(hub) => (None, hub.ring.expire(now)),
        }
    }

    /// Edge: the hub was heard from (in-band evidence arrived).
    pub(super) fn on_heard(&mut self, now: Instant) {
        if let Mode::Edge { session, .. } = &mut self.mode {
            session.on_heard(now);
        }
    }

    /// Edge: the data plane has sent `total` packets (all links, cumulative).
    pub(super) fn on_sent(&mut self, now: Instant, total: u64) {
        if let Mode::Edge { session, .. } = &mut self.mode {
            session.on_sent(now, total);
        }
    }

    /// When [`Self::tick`] next has something to do (never without auth).
    pub(super) fn deadline(&self) -> Option<Instant> {
        match &self.mode {
            Mode::Off => None,
            Mode::Edge { session, .. } => Some(session.deadline()),
            Mode::Hub(hub) => hub.ring.previous.as_ref().map(|(_, until)| *until),
        }
    }

    /// A handshake message (the payload after the Strata header) arrived in
    /// a packet of `session`.
    pub(super) fn on_message(&mut self, session: u32, link: u8, payload: &[u8], now: Instant) -> Outcome {
        let result = match &mut self.mode {
            Mode::Off => {
                debug!(link, "handshake message while auth is off: ignored");
                return Outcome::Nothing;
            }
            Mode::Edge { session: edge, .. } => match message::parse(payload) {
                Ok(Message::Response { .. }) => edge.on_response(now, payload).map(|keys| {
                    info!(epoch = keys.epoch, link, "auth: session established with the hub");
                    Outcome::Keys
                }),
                Ok(Message::Initiation { .. }) => Err(HandshakeError::Unexpected("initiation")),
                Err(e) => Err(e.into()),
            },
            Mode::Hub(hub) => {
                let HubSide { responder, limiter, ring, car, overlap } = &mut **hub;
                if !matches!(message::parse(payload), Ok(Message::Initiation { .. })) {
                    Err(message::parse(payload)
                        .err()
                        .map_or(HandshakeError::Unexpected("response"), Into::into))
                } else if !limiter.take(now) {
                    *self.rejected.entry("rate_limited").or_default() += 1;
                    return Outcome::Nothing;
                } else {
                    responder.on_initiation(session, payload).map(|admitted| {
                        info!(car = %admitted.car, key = %admitted.public.fingerprint(), epoch = admitted.keys.epoch, link,
                              "auth: car admitted");
                        let mut out = vec![0u8; HEADER_LEN + admitted.reply.len()];
                        out[HEADER_LEN..].copy_from_slice(&admitted.reply);
                        frame(&mut out, session, link);
                        // Another car taking over the session (a spare box
                        // with its own key): the previous car's keys are
                        // not kept for an overlap.
                        if car.as_ref().is_some_and(|(_, k)| *k != admitted.public) {
                            *ring = KeyRing::default();
                        }
                        ring.rotate(admitted.keys, now, *overlap);
                        *car = Some((admitted.car, admitted.public));
                        Outcome::Reply(out)
                    })
                }
            }
        };
        match result {
            Ok(outcome) => {
                self.completed += 1;
                self.last_rekey = Some(SystemTime::now());
                outcome
            }
            Err(e) => {
                // Refusals are counted, logged at debug: a flood must not
                // flood the log too.
                debug!(link, "auth: handshake message refused: {e}");
                *self.rejected.entry(e.reason()).or_default() += 1;
                Outcome::Nothing
            }
        }
    }

    /// The keys now held (none without auth or before the first handshake).
    pub(super) fn ring(&self) -> Option<&KeyRing> {
        match &self.mode {
            Mode::Off => None,
            Mode::Edge { session, .. } => Some(&session.ring),
            Mode::Hub(hub) => Some(&hub.ring),
        }
    }

    /// For status and metrics.
    pub(super) fn view(&self) -> AuthView {
        let session_view = |peer: String, fingerprint: String, ring: &KeyRing| SessionView {
            peer,
            fingerprint,
            established: ring.current.is_some(),
            epoch: ring.current.as_ref().map_or(0, |k| k.epoch),
            previous_epoch: ring.previous().map(|k| k.epoch),
            last_rekey_unix_s: self
                .last_rekey
                .filter(|_| ring.current.is_some())
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|d| d.as_secs()),
        };
        let sessions = match &self.mode {
            Mode::Off => Vec::new(),
            Mode::Edge { session, hub } => vec![session_view("hub".into(), hub.fingerprint(), &session.ring)],
            Mode::Hub(hub) => hub
                .car
                .iter()
                .map(|(name, key)| session_view(name.clone(), key.fingerprint(), &hub.ring))
                .collect(),
        };
        AuthView {
            mode: if matches!(self.mode, Mode::Off) { "none" } else { "keys" }.into(),
            own_key: self.own.map(|k| k.fingerprint()).unwrap_or_default(),
            sessions,
            initiations_sent: self.initiations_sent,
            completed: self.completed,
            rejected: self.rejected.iter().map(|(r, n)| ((*r).to_string(), *n)).collect(),
        }
    }
}

/// Writes a `Handshake` header for `link` of `session` in front of the
/// payload already at `out[HEADER_LEN..]`.
pub(super) fn frame(out: &mut [u8], session: u32, link: u8) {
    let header = Header::new(Fields {
        packet_type: PacketType::Handshake,
        flags: 0,
        link_id: link,
        session,
        global_seq: 0,
        link_seq: 0,
        timestamp_us: 0,
    });
    let _ = header.encode(out);
}

/// The hand-over of keys to the data plane (and to the controller's own
/// control packets, `control`): the kernel holds what the ring holds. A new current pair is installed (and becomes the one the kernel
/// sends with; the pair in the other slot stays for receiving), a pair no
/// longer in the ring is retired. `installed` is what this daemon put in the
/// kernel so far.
pub(super) fn install(dp: &mut Datapath, control: &ControlKey, ring: &KeyRing, installed: &mut Vec<u32>) {
    use strata_common::auth::TrafficKeys;
    if let Some(k) = &ring.current
        && !installed.contains(&k.epoch)
    {
        let keys = TrafficKeys::from_secrets(k.epoch, &k.tx, &k.rx);
        match dp.install_keys(&keys) {
            Ok(()) => {
                // The controller's probes, replies and feedback are tagged
                // with the same sending key as the kernel's packets.
                control.install(&keys);
                info!(epoch = k.epoch, "auth: data plane keys installed");
                installed.push(k.epoch);
            }
            Err(e) => warn!(epoch = k.epoch, "auth: installing the data plane keys: {e}"),
        }
    }
    let keep: Vec<u32> = ring.current.iter().chain(ring.previous()).map(|k| k.epoch).collect();
    installed.retain(|&epoch| {
        if keep.contains(&epoch) {
            return true;
        }
        match dp.retire_keys(epoch) {
            Ok(_) => {
                debug!(epoch, "auth: data plane keys retired");
                false
            }
            Err(e) => {
                warn!(epoch, "auth: retiring the data plane keys: {e}");
                true
            }
        }
    });
}

/// The wall clock, ns since the Unix epoch (initiation timestamps).
fn unix_ns() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::StaticKey;

    /// An edge's and a hub's `Trust` from real configurations and key files.
    fn pair(dir: &std::path::Path, hub_extra: &str) -> (Trust, Trust) {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).unwrap();
        let (hub_key, edge_key) = (StaticKey::generate().unwrap(), StaticKey::generate().unwrap());
        hub_key.save(&dir.join("hub.key")).unwrap();
        edge_key.save(&dir.join("edge.key")).unwrap();
        let edge = Config::parse(
            &format!(
                "version = 1\nrole = \"edge\"\nsession = 7\n[tunnel]\naddress = \"10.200.0.1/30\"\n\
                 [peer]\naddress = \"198.19.0.2\"\n[[links]]\nid = 0\ninterface = \"lnk0\"\n\
                 [auth]\nmode = \"keys\"\nprivate_key = \"{}\"\nhub_public_key = \"{}\"\n",
                dir.join("edge.key").display(),
                hub_key.public
            ),
            "edge.toml",
        )
        .unwrap();
        let hub = Config::parse(
            &format!(
                "version = 1\nrole = \"hub\"\nsession = 7\n[tunnel]\naddress = \"10.200.0.2/30\"\n\
                 [hub]\ninterface = \"wan0\"\n[auth]\nmode = \"keys\"\nprivate_key = \"{}\"\n{hub_extra}\n\
                 [[auth.cars]]\nname = \"car7\"\npublic_key = \"{}\"\nsession = 7\n",
                dir.join("hub.key").display(),
                edge_key.public
            ),
            "hub.toml",
        )
        .unwrap();
        let now = Instant::now();
        (Trust::start(&edge, now).unwrap(), Trust::start(&hub, now).unwrap())
    }

    #[test]
    fn the_shell_carries_a_handshake_and_counts_refusals() {
        let dir = std::env::temp_dir().join(format!("strata-trust-{}", std::process::id()));
        let (mut edge, mut hub) = pair(&dir, "handshake_rate = 1\nhandshake_burst = 2");
        let now = Instant::now();
        let (Some((0, initiation)), false) = edge.tick(now, 7) else { panic!("no initiation at start") };
        let Outcome::Reply(reply) = hub.on_message(7, 0, &initiation, now) else {
            panic!("hub did not answer")
        };
        let (fields, payload) = Header::parse(&reply, 7, 8).unwrap();
        assert_eq!((fields.packet_type, fields.link_id), (PacketType::Handshake, 0));
        assert!(matches!(edge.on_message(7, 0, payload, now), Outcome::Keys));
        let (e, h) = (edge.view(), hub.view());
        assert_eq!((e.completed, h.completed, e.initiations_sent), (1, 1, 1));
        assert!(e.sessions[0].established && h.sessions[0].established);
        assert_eq!(e.sessions[0].epoch, h.sessions[0].epoch);
        assert_eq!(h.sessions[0].peer, "car7");
        assert_eq!(e.sessions[0].fingerprint, h.own_key);
        let (ek, hk) =
            (edge.ring().unwrap().current.clone().unwrap(), hub.ring().unwrap().current.clone().unwrap());
        assert_eq!((ek.tx, ek.rx), (hk.rx, hk.tx));
        // The same initiation again: a replay (the bucket had a second
        // token); then the bucket is empty and garbage is refused unread.
        assert!(matches!(hub.on_message(7, 0, &initiation, now), Outcome::Nothing));
        assert!(matches!(hub.on_message(7, 0, &initiation, now), Outcome::Nothing));
        assert!(matches!(hub.on_message(7, 0, &[9, 9], now), Outcome::Nothing));
        let rejected = hub.view().rejected;
        assert_eq!(
            rejected,
            vec![("malformed".to_string(), 1), ("rate_limited".to_string(), 1), ("replayed".to_string(), 1)]
        );
        assert_eq!(hub.ring().unwrap().current.as_ref().map(|k| k.epoch), Some(hk.epoch), "keys untouched");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
