//! The key the controller tags its control packets with (probes, probe
//! replies, packet trains, feedback): the kernel's own sending key, so the
//! far side's kernel verifies them like data (`strata_common::auth`).
//!
//! Receiving needs nothing here: every control packet reaches the
//! controller's socket through the ingress program of the interface it
//! arrived on (the edge's links, the hub's public interface), which checks
//! its tag before handing it up — with authentication required a control
//! packet without a valid tag never reaches a socket. (A packet to the
//! control port through an interface without the program — none in a
//! deployment as documented — is not checked; see docs/WIRE.md.)

use std::sync::{Arc, RwLock};

use strata_common::{
    auth::{AuthKey, KEY_SLOTS, SendKey, TrafficKeys, seal},
    drop::DropReason,
    wire::Header,
};

/// A shared handle on the current sending key; clones see the same key.
/// Empty: control packets go out untagged, as before authentication.
#[derive(Clone, Debug, Default)]
pub struct ControlKey(Arc<RwLock<Option<SendKey>>>);

impl ControlKey {
    /// Sends with `keys` from now on (what `Datapath::install_keys` makes
    /// the kernel send with; call both).
    pub fn install(&self, keys: &TrafficKeys) {
        self.set(SendKey::of(&keys.entry(true)));
    }

    /// Sends with whatever slot of the kernel's map sends (e.g. after
    /// adopting a running data plane): `Datapath::auth_keys`.
    pub fn follow(&self, slots: &[AuthKey; KEY_SLOTS as usize]) {
        self.set(slots.iter().find_map(SendKey::of));
    }

    fn set(&self, key: Option<SendKey>) {
        // A poisoned lock only means a writer panicked mid-assignment of a
        // Copy value: the value is whole either way.
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = key;
    }

    /// The current key.
    pub fn get(&self) -> Option<SendKey> {
        *self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    /// `header` and `body` as a packet into `out` (tagged if a key is
    /// installed); the length written.
    pub fn seal(&self, header: Header, body: &[u8], out: &mut [u8]) -> Result<usize, DropReason> {
        seal(self.get().as_ref(), header, body, out)
    }
}

#[cfg(test)]
mod tests {
    use strata_common::{
        auth::{key_words, verify},
        wire::{Fields, PacketType},
    };

    use super::*;

    #[test]
    fn a_clone_tags_with_the_installed_key() {
        let key = ControlKey::default();
        let copy = key.clone();
        let h = Header::new(Fields {
            packet_type: PacketType::Feedback,
            flags: 0,
            link_id: 1,
            session: 1,
            global_seq: 0,
            link_seq: 0,
            timestamp_us: 0,
        });
        let mut out = [0u8; 64];
        assert_eq!(copy.seal(h, &[1; 8], &mut out).unwrap(), 28, "untagged without a key");
        let keys = TrafficKeys { epoch: 4, send: [1; 16], recv: [2; 16] };
        key.install(&keys);
        let n = copy.seal(h, &[1; 8], &mut out).unwrap();
        assert_eq!(n, 36);
        assert!(verify(&key_words(&[1; 16]), &out[..n]));
        key.follow(&[AuthKey::default(); 2]);
        assert!(copy.get().is_none());
    }
}
