//! Prometheus exposition: what the kernel counted and what the controller
//! knows, in the text format on `GET /metrics`.
//!
//! Kernel counters are read from the instance's pinned maps when a scrape
//! arrives — no per-packet work in userspace, and nothing shared with the
//! control loop but a small published copy of the controller's view, which
//! the loop replaces on every tick. The counters hold the kernel's
//! cumulative values, so what Prometheus sees is the kernel's own numbers; a
//! restarted daemon that finds its pinned maps keeps counting from them.
//!
//! A scrape runs in two steps:
//!
//! * [`gather`](fn@gather) does all the I/O — pinned maps, sampling maps, program
//!   statistics, rtnetlink, the published view, the uptime — and returns one
//!   plain [`Gathered`] value;
//! * [`encode`](fn@encode) turns that value into the text format and does nothing else:
//!   no I/O, no clock, no locks. Its whole output is pinned by a golden file
//!   (`testdata/metrics.prom`).
//!
//! Names follow the Prometheus conventions: `strata_` prefix, base units
//! (`_seconds`, `_bytes`, `_bits_per_second`, `_ratio`), `_total` for
//! counters; per-link series carry `link` (the configured id, stable across
//! restarts and interface renames) and, on the edge, `interface`. The
//! Grafana board and docs/OPERATIONS.md name these series: changing one is
//! changing an interface.
//!
//! [`serve`] answers `GET /metrics` over HTTP/1.1.

pub mod encode;
pub mod gather;

use std::{sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};
use tracing::debug;

pub use self::{
    encode::encode,
    gather::{Gathered, HostQueues, ProgramRuns, gather},
};
use crate::{os::net::Net, serve::view::Exposition};

/// Serves `GET /metrics` on `listener` until the task is dropped.
///
/// A few lines of HTTP/1.1 by hand rather than an HTTP framework: one path,
/// one method, no bodies, no keep-alive — a framework would add dozens of
/// crates to a privileged daemon for that.
pub async fn serve(listener: TcpListener, exposition: Arc<Exposition>) {
    // Its own netlink socket: a scrape never waits behind the control loop's.
    let net = match Net::connect() {
        Ok(n) => Some(Arc::new(n)),
        Err(e) => {
            tracing::warn!("qdisc statistics will be missing from /metrics: {e}");
            None
        }
    };
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors, most likely: pause rather than spin.
                debug!("metrics: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (exposition, net) = (exposition.clone(), net.clone());
        tokio::spawn(async move {
            if let Err(e) = answer(stream, &exposition, net.as_deref()).await {
                debug!(%peer, "metrics request: {e}");
            }
        });
    }
}

/// Largest request head read.
const MAX_REQUEST: usize = 8192;
/// A client that has not sent its request by then is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

async fn answer(mut stream: TcpStream, exposition: &Exposition, net: Option<&Net>) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let read = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(())
    };
    tokio::time::timeout(REQUEST_TIMEOUT, read).await.map_err(|_| std::io::ErrorKind::TimedOut)??;
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => match encode(&gather(exposition, net).await) {
            Ok(text) => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", text),
            Err(e) => ("500 Internal Server Error", "text/plain; charset=utf-8", format!("{e}\n")),
        },
        ("GET", _) => ("404 Not Found", "text/plain; charset=utf-8", "try /metrics\n".to_string()),
        _ => ("405 Method Not Allowed", "text/plain; charset=utf-8", "GET only\n".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
