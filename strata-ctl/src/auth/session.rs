//! When to handshake, and which keys are valid: the edge's schedule of
//! initiations (first contact, retries with backoff, periodic rekeying) and
//! the key ring both sides keep across a rotation. Deterministic: the time
//! is an argument.

use std::time::{Duration, Instant};

use super::handshake::{Established, HandshakeError, Initiator, SessionKeys};

/// The first retry comes this long after an unanswered initiation. Not
/// shorter: a cellular round trip can take hundreds of ms, and a retry
/// sent before the answer makes the hub rotate twice — its intermediate
/// keys replace, in the data plane's slot of their parity, the keys the
/// edge still sends with, until the second answer arrives (lab: 0.9 % of a
/// restart scenario's packets lost at 250 ms)...
pub const RETRY_MIN: Duration = Duration::from_secs(1);
/// ...doubling up to this (a hub that is down is not hammered).
pub const RETRY_MAX: Duration = Duration::from_secs(30);
/// An established edge that has heard nothing from the hub for this long
/// handshakes again: a hub that restarted without its keys cannot verify
/// (and, with authentication required, drops) what the edge sends, and only
/// the edge can start a handshake.
pub const UNHEARD: Duration = Duration::from_secs(5);

/// The keys a side holds: the current pair, and the previous pair for a
/// short overlap after a rotation, so packets sent under the old keys just
/// before the switch (or still in flight on a slow link) are accepted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyRing {
    /// The newest keys: what is sent under, and accepted.
    pub current: Option<SessionKeys>,
    /// The keys before, accepted (never sent under) until `until`.
    pub previous: Option<(SessionKeys, Instant)>,
}

impl KeyRing {
    /// Makes `keys` current at `now`; the current pair is accepted for
    /// `overlap` more.
    pub fn rotate(&mut self, keys: SessionKeys, now: Instant, overlap: Duration) {
        self.previous = self.current.take().map(|k| (k, now + overlap));
        self.current = Some(keys);
    }

    /// Forgets the previous pair once its overlap is over; true if it did.
    pub fn expire(&mut self, now: Instant) -> bool {
        match self.previous {
            Some((_, until)) if now >= until => {
                self.previous = None;
                true
            }
            _ => false,
        }
    }

    /// The previous pair while it is accepted.
    pub fn previous(&self) -> Option<&SessionKeys> {
        self.previous.as_ref().map(|(k, _)| k)
    }
}

/// The edge's handshake schedule around its [`Initiator`].
#[derive(Debug)]
pub struct EdgeSession {
    initiator: Initiator,
    /// The keys now held.
    pub ring: KeyRing,
    /// When the current keys were made.
    pub established_at: Option<Instant>,
    /// When the next initiation is due.
    next_attempt: Instant,
    /// The wait after the next unanswered attempt.
    backoff: Duration,
    /// Initiations sent since the last success: picks the link (round
    /// robin, so a dead first link does not stop the session).
    pub attempts: u32,
    /// How often to rekey (the hub may ask for less).
    rekey_interval: Duration,
    /// How long the previous keys stay accepted.
    overlap: Duration,
    /// Names the next initiation.
    next_index: u32,
    /// Rekey once this many packets were sent under the current keys (0: never).
    rekey_after_packets: u64,
    /// The sent-packet count last seen, and the count when the current
    /// keys came.
    sent: u64,
    sent_at_keys: u64,
    /// When the hub was last heard from (probe replies, feedback); `None`
    /// until then, and again once a silence started a handshake.
    last_heard: Option<Instant>,
}

impl EdgeSession {
    /// A session to be established at once.
    pub fn new(initiator: Initiator, rekey_interval: Duration, overlap: Duration, now: Instant) -> Self {
        Self {
            initiator,
            ring: KeyRing::default(),
            established_at: None,
            next_attempt: now,
            backoff: RETRY_MIN,
            attempts: 0,
            rekey_interval,
            overlap,
            next_index: 1,
            rekey_after_packets: 0,
            sent: 0,
            sent_at_keys: 0,
            last_heard: None,
        }
    }

    /// Also rekeys once `packets` were sent under one pair of keys.
    pub fn with_packet_limit(mut self, packets: u64) -> Self {
        self.rekey_after_packets = packets;
        self
    }

    /// The data plane has sent `total` packets so far (cumulative, all
    /// links): past the packet limit under the current keys, the next poll
    /// rekeys.
    pub fn on_sent(&mut self, now: Instant, total: u64) {
        self.sent = total;
        if self.rekey_after_packets > 0
            && self.ring.current.is_some()
            && total.saturating_sub(self.sent_at_keys) >= self.rekey_after_packets
        {
            self.rekey_now(now);
        }
    }

    /// The initiator (its public key, for status).
    pub fn initiator(&self) -> &Initiator {
        &self.initiator
    }

    /// When [`Self::poll`] next has something to do.
    pub fn deadline(&self) -> Instant {
        let expiry = self.ring.previous.as_ref().map(|(_, until)| *until);
        let silence = self.last_heard.filter(|_| self.ring.current.is_some()).map(|t| t + UNHEARD);
        [expiry, silence].into_iter().flatten().fold(self.next_attempt, Instant::min)
    }

    /// What is due at `now` (`unix_ns` the wall clock): an initiation to
    /// send, as the handshake payload and the attempt number (the caller
    /// picks the link from it). Old keys past their overlap are dropped
    /// here too.
    pub fn poll(
        &mut self,
        now: Instant,
        unix_ns: u64,
    ) -> Result<Option<([u8; super::message::INITIATION_LEN], u32)>, HandshakeError> {
        self.ring.expire(now);
        if self.ring.current.is_some()
            && self.last_heard.is_some_and(|t| now.saturating_duration_since(t) >= UNHEARD)
        {
            // Once per silence; the retries' backoff does the rest.
            self.last_heard = None;
            self.rekey_now(now);
        }
        if now < self.next_attempt {
            return Ok(None);
        }
        let index = self.next_index;
        self.next_index = self.next_index.wrapping_add(1).max(1);
        let bytes = self.initiator.initiate(unix_ns, index)?;
        let attempt = self.attempts;
        self.attempts = self.attempts.saturating_add(1);
        self.next_attempt = now + self.backoff;
        self.backoff = (self.backoff * 2).min(RETRY_MAX);
        Ok(Some((bytes, attempt)))
    }

    /// Takes a response: the keys are rotated in and the next rekey is
    /// scheduled.
    pub fn on_response(&mut self, now: Instant, bytes: &[u8]) -> Result<&SessionKeys, HandshakeError> {
        let Established { keys, rekey_interval_s } = self.initiator.on_response(bytes)?;
        self.ring.rotate(keys, now, self.overlap);
        self.established_at = Some(now);
        self.sent_at_keys = self.sent;
        let asked = Duration::from_secs(u64::from(rekey_interval_s));
        let interval = if asked.is_zero() { self.rekey_interval } else { asked.min(self.rekey_interval) };
        self.next_attempt = now + interval.max(RETRY_MAX);
        self.backoff = RETRY_MIN;
        self.attempts = 0;
        self.ring.current.as_ref().ok_or(HandshakeError::BadMessage)
    }

    /// The hub was heard from at `now` (something of its in-band channel
    /// arrived, which with keys installed the kernel has verified).
    pub fn on_heard(&mut self, now: Instant) {
        self.last_heard = Some(now);
    }

    /// Rekeys at the next poll (e.g. after so many packets).
    pub fn rekey_now(&mut self, now: Instant) {
        if !self.initiator.is_pending() {
            self.next_attempt = self.next_attempt.min(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{
        super::{
            handshake::{Car, Responder},
            keys::StaticKey,
        },
        *,
    };

    const UNIX: u64 = 1_800_000_000_000_000_000;

    fn setup(now: Instant) -> (EdgeSession, Responder) {
        let hub = StaticKey::generate().unwrap();
        let car = StaticKey::generate().unwrap();
        let responder =
            Responder::new(hub.clone(), vec![Car { name: "car".into(), public: car.public, session: 3 }], 0);
        let session = EdgeSession::new(
            Initiator::new(car, hub.public, 3),
            Duration::from_secs(600),
            Duration::from_secs(10),
            now,
        );
        (session, responder)
    }

    fn at(t0: Instant, s: u64) -> (Instant, u64) {
        (t0 + Duration::from_secs(s), UNIX + s * 1_000_000_000)
    }

    #[test]
    fn retries_back_off_then_rotation_keeps_the_old_keys_for_the_overlap() {
        let t0 = Instant::now();
        let (mut edge, mut hub) = setup(t0);
        // First attempt at once; unanswered, the next after 1 s, then 2 s.
        let (first, n) = edge.poll(t0, UNIX).unwrap().unwrap();
        assert_eq!(n, 0);
        assert!(edge.poll(t0 + Duration::from_millis(999), UNIX).unwrap().is_none());
        let (second, n) = edge.poll(at(t0, 1).0, at(t0, 1).1).unwrap().unwrap();
        assert_eq!(n, 1);
        assert!(edge.poll(at(t0, 2).0, at(t0, 2).1).unwrap().is_none());
        // The first initiation's answer comes late: not the one outstanding.
        let late = hub.on_initiation(3, &first).unwrap();
        assert!(edge.on_response(at(t0, 2).0, &late.reply).is_err());
        let answer = hub.on_initiation(3, &second).unwrap();
        let keys = edge.on_response(at(t0, 2).0, &answer.reply).unwrap().clone();
        assert_eq!(keys.rx, answer.keys.tx);
        assert_eq!(edge.attempts, 0);
        // Nothing due until the rekey interval is over.
        assert!(edge.poll(at(t0, 300).0, at(t0, 300).1).unwrap().is_none());
        let (rekey, _) = edge.poll(at(t0, 602).0, at(t0, 602).1).unwrap().unwrap();
        let answer = hub.on_initiation(3, &rekey).unwrap();
        let new = edge.on_response(at(t0, 603).0, &answer.reply).unwrap().clone();
        assert!(new.epoch > keys.epoch);
        assert_eq!(edge.ring.previous(), Some(&keys));
        assert_eq!(edge.deadline(), at(t0, 613).0);
        assert!(edge.poll(at(t0, 612).0, at(t0, 612).1).unwrap().is_none());
        assert!(edge.ring.previous().is_some());
        let _ = edge.poll(at(t0, 613).0, at(t0, 613).1).unwrap();
        assert_eq!(edge.ring.previous(), None);
        assert_eq!(edge.ring.current.as_ref(), Some(&new));
    }

    #[test]
    fn a_packet_limit_rekeys_early() {
        let t0 = Instant::now();
        let (edge, mut hub) = setup(t0);
        let mut edge = edge.with_packet_limit(1_000);
        edge.on_sent(t0, 500);
        let (init, _) = edge.poll(t0, UNIX).unwrap().unwrap();
        let answer = hub.on_initiation(3, &init).unwrap();
        edge.on_response(t0, &answer.reply).unwrap();
        let (t, unix) = at(t0, 60);
        edge.on_sent(t, 1_499);
        assert!(edge.poll(t, unix).unwrap().is_none(), "999 packets under these keys");
        edge.on_sent(t, 1_500);
        assert!(edge.poll(t, unix).unwrap().is_some(), "1000 packets: rekey");
    }

    #[test]
    fn a_silent_hub_gets_a_new_handshake_once_per_silence() {
        let t0 = Instant::now();
        let (mut edge, mut hub) = setup(t0);
        let (init, _) = edge.poll(t0, UNIX).unwrap().unwrap();
        edge.on_response(t0, &hub.on_initiation(3, &init).unwrap().reply).unwrap();
        // Never heard: no trigger (a static edge has no in-band channel).
        assert!(edge.poll(at(t0, 20).0, at(t0, 20).1).unwrap().is_none());
        edge.on_heard(at(t0, 20).0);
        assert_eq!(edge.deadline(), at(t0, 25).0, "the silence is on the clock");
        assert!(edge.poll(at(t0, 24).0, at(t0, 24).1).unwrap().is_none());
        assert!(edge.poll(at(t0, 25).0, at(t0, 25).1).unwrap().is_some(), "5 s unheard: handshake");
        // Unanswered: retries follow the backoff.
        assert!(edge.poll(at(t0, 25).0 + Duration::from_millis(999), at(t0, 25).1).unwrap().is_none());
        assert!(edge.poll(at(t0, 26).0, at(t0, 26).1).unwrap().is_some());
    }

    #[test]
    fn the_backoff_stops_growing() {
        let t0 = Instant::now();
        let (mut edge, _) = setup(t0);
        let mut t = t0;
        let mut gaps = Vec::new();
        let mut last = t0;
        for _ in 0..4000 {
            t += Duration::from_millis(50);
            if edge.poll(t, UNIX).unwrap().is_some() {
                gaps.push((t - last).as_millis());
                last = t;
            }
        }
        assert_eq!(&gaps[1..7], &[1000, 2000, 4000, 8000, 16000, 30000]);
        assert!(gaps[6..].iter().all(|&g| g == 30_000));
    }
}
