//! Why the daemon did not start, or did not stop cleanly.
//!
//! Each layer reports its own failures ([`HostError`], [`NetError`],
//! [`DatapathError`]); the daemon knows what it was doing when one happened —
//! which configuration field, which interface, which socket — and adds that
//! here, as a variant rather than a string, so a caller can tell a missing
//! interface from a taken port. Every message names the field an operator
//! would change (`links[0].interface: …`, `metrics.listen: …`) and ends with
//! the layer's own message, which is also the variant's
//! [`source`](std::error::Error::source).

use std::{io, net::SocketAddr};

use crate::{
    dataplane::datapath::DatapathError,
    os::{host::HostError, net::NetError},
};

/// Why [`run`](super::run) failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The host cannot run the daemon: not root, no bpffs, the instance's
    /// lock taken (`name: an instance named … is already running`).
    #[error(transparent)]
    Host(#[from] HostError),
    /// The `[auth]` key file or a key in it is unusable (checked before
    /// anything is created).
    #[error("auth: {source}")]
    Auth {
        /// Which file or key, and why.
        #[from]
        source: crate::auth::keys::KeyError,
    },
    /// The metrics port could not be bound (bound first, so nothing was
    /// created yet).
    #[error("metrics.listen: cannot listen on {address}: {source}")]
    MetricsListen {
        /// The configured address.
        address: SocketAddr,
        /// Why, e.g. the port is taken.
        source: io::Error,
    },
    /// A netlink request failed (the error says what it was).
    #[error(transparent)]
    Net(#[from] NetError),
    /// A configured interface could not be looked up.
    #[error("{field}: {source}")]
    Interface {
        /// The field naming it, e.g. `links[0].interface`.
        field: String,
        /// Why, e.g. it does not exist.
        source: NetError,
    },
    /// A required field is absent (validation normally catches this first).
    #[error("{field}: missing")]
    Missing {
        /// The field.
        field: String,
    },
    /// The hub's interface has no address to listen on, of either family.
    #[error(
        "hub.interface {interface}: has no IPv4 address and no global IPv6 one (set hub.address or hub.address6)"
    )]
    HubWithoutAddress {
        /// The interface's name.
        interface: String,
    },
    /// A link's interface has no address to send from of a family the hub has.
    #[error(
        "links[{index}].interface: {interface} has no address of a family the hub has yet (IPv4, or global IPv6 with peer.address6; set links[{index}].address or wait for the modem)"
    )]
    LinkWithoutAddress {
        /// The link's position in `[[links]]`.
        index: usize,
        /// The interface's name.
        interface: String,
    },
    /// An Ethernet-framed link needs a next hop, and none was found.
    #[error(
        "links[{index}].gateway: {interface} is an Ethernet-framed link with no default route; set the next hop explicitly"
    )]
    LinkWithoutGateway {
        /// The link's position in `[[links]]`.
        index: usize,
        /// The interface's name.
        interface: String,
    },
    /// The configured tunnel MTU is larger than the links can carry.
    #[error(
        "tunnel.mtu: {mtu} does not fit the links: at most {max} ({carrier} link MTU - {headers} bytes of tunnel headers)"
    )]
    MtuTooLarge {
        /// The configured MTU.
        mtu: u32,
        /// The largest that fits.
        max: u32,
        /// The smallest link MTU.
        carrier: u32,
        /// Bytes of tunnel headers.
        headers: usize,
    },
    /// The TUN device could not be created.
    #[error("creating the tunnel device: {source}")]
    TunnelDevice {
        /// Why.
        source: io::Error,
    },
    /// The eBPF object could not be loaded (or its maps pinned).
    #[error("loading the data plane: {source}")]
    LoadDataplane {
        /// Why.
        source: DatapathError,
    },
    /// Filling the data plane's maps or attaching its programs failed (the
    /// error names the map or program).
    #[error(transparent)]
    Dataplane(#[from] DatapathError),
    /// The control socket on the tunnel port could not be bound.
    #[error("binding the control socket on UDP port {port}: {source}")]
    ControlSocket {
        /// The tunnel port.
        port: u16,
        /// Why.
        source: io::Error,
    },
    /// At shutdown: the pinned maps could not be removed.
    #[error("removing pinned maps: {source}")]
    Unpin {
        /// Why.
        source: DatapathError,
    },
}

/// Why adaptive control did not start (the tunnel then keeps the configured
/// weights).
#[derive(Debug, thiserror::Error)]
pub(super) enum AdaptiveError {
    /// A link's policy routing could not be installed.
    #[error(transparent)]
    Routing(#[from] NetError),
    /// A link's probe socket could not be bound.
    #[error("binding link {link}'s probe socket on {address}: {source}")]
    ProbeSocket {
        /// The link id.
        link: u8,
        /// The link's source address and the tunnel port.
        address: SocketAddr,
        /// Why.
        source: io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_field_and_end_with_the_cause() {
        let taken = StartError::MetricsListen {
            address: "127.0.0.1:9464".parse().unwrap(),
            source: io::Error::from(io::ErrorKind::AddrInUse),
        };
        assert_eq!(taken.to_string(), "metrics.listen: cannot listen on 127.0.0.1:9464: address in use");
        assert!(std::error::Error::source(&taken).is_some(), "the cause is kept, not only its text");
        let missing = StartError::Interface {
            field: "links[0].interface".into(),
            source: NetError::NoInterface("wwan7".into()),
        };
        assert!(missing.to_string().starts_with("links[0].interface: interface \"wwan7\" not found"));
        let no_address = StartError::LinkWithoutAddress { index: 1, interface: "wwan1".into() };
        assert_eq!(
            no_address.to_string(),
            "links[1].interface: wwan1 has no address of a family the hub has yet (IPv4, or global IPv6 with peer.address6; set links[1].address or wait for the modem)"
        );
        let mtu = StartError::MtuTooLarge { mtu: 1500, max: 1452, carrier: 1500, headers: 48 };
        assert_eq!(
            mtu.to_string(),
            "tunnel.mtu: 1500 does not fit the links: at most 1452 (1500 link MTU - 48 bytes of tunnel headers)"
        );
    }
}
