//! The handshake's own per-link sockets on an edge under static control.
//!
//! Adaptive control gives every link policy routing and a socket on the
//! link's address (its probers'), and the handshake travels on those. Static
//! control has neither: the edge's tunnel port is only the wildcard control
//! socket, whose datagrams follow the host's main routing table — which on a
//! car need not reach the hub outside the tunnel. So with keys configured a
//! static edge sets up the same per-link routing and sockets for the
//! handshake alone, and a small task per link hands the hub's responses to
//! the event loop.

use std::sync::Arc;

use strata_common::{
    maps::MAX_LINKS,
    wire::{Header, PacketType},
};
use tokio::{
    net::UdpSocket,
    sync::{mpsc, watch},
};

use super::{
    adaptive::{open_path, remove_routing},
    error::AdaptiveError,
    follower::ProbePath,
    links::ResolvedLink,
};
use crate::{config::Config, os::net::Net};

/// Per link, in the links' order: routing and a socket, and the responses
/// that arrive on them.
#[derive(Debug)]
pub(super) struct HandshakePaths {
    /// The same shape as adaptive control's, so the follower re-binds them
    /// alike when a link's address changes.
    pub(super) paths: Vec<ProbePath>,
    /// Link id and handshake payload of what arrived.
    pub(super) messages: mpsc::Receiver<(u8, Vec<u8>)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for HandshakePaths {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl HandshakePaths {
    /// Routing and a socket per link; what was made is removed again if a
    /// link fails.
    pub(super) async fn start(
        net: &Net,
        config: &Config,
        links: &[ResolvedLink],
    ) -> Result<Self, AdaptiveError> {
        let (tx, messages) = mpsc::channel(16);
        let mut paths = Vec::new();
        let mut tasks = Vec::new();
        for link in links {
            let (routing, sock) = match open_path(net, config, link).await {
                Ok(opened) => opened,
                Err(e) => {
                    remove_routing(net, &mut paths).await;
                    return Err(e);
                }
            };
            let (socket, bound) = watch::channel(Arc::new(sock));
            paths.push(ProbePath { routing: Some(routing), socket });
            tasks.push(tokio::spawn(receive(link.id, config.session, bound, tx.clone())));
        }
        Ok(Self { paths, messages, tasks })
    }
}

/// Hands the handshake messages for `link` that reach its socket (the one
/// bound now) to the event loop.
async fn receive(
    link: u8,
    session: u32,
    mut bound: watch::Receiver<Arc<UdpSocket>>,
    out: mpsc::Sender<(u8, Vec<u8>)>,
) {
    let mut sock = bound.borrow_and_update().clone();
    let mut buf = [0u8; 256];
    loop {
        tokio::select! {
            Ok(()) = bound.changed() => sock = bound.borrow_and_update().clone(),
            received = sock.recv_from(&mut buf) => {
                let Ok((n, _)) = received else { continue };
                let Ok((fields, payload)) = Header::parse(&buf[..n], session, MAX_LINKS as u8) else { continue };
                if fields.packet_type == PacketType::Handshake && fields.link_id == link {
                    // Dropped if the daemon is behind: the edge retries.
                    let _ = out.try_send((link, payload.to_vec()));
                }
            }
        }
    }
}
