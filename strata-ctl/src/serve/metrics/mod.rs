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
pub mod request;

use std::{sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};
use tracing::debug;

use self::request::Route;
pub use self::{
    encode::encode,
    gather::{Gathered, HostQueues, ProgramRuns, gather},
};
use crate::{inband::guard::GuardCounters, os::net::Net, serve::view::Exposition};

/// How many requests `/metrics` serves at once, and how long each may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; more are closed at once and counted.
    /// Prometheus keeps one scrape per target open, so a handful covers a
    /// few scrapers and someone's curl; the cap keeps a connection flood
    /// from costing a task, a buffer and a netlink dump each.
    pub connections: usize,
    /// Largest request head read.
    pub request_bytes: usize,
    /// The whole exchange — request head in, answer out — within this, or
    /// the connection is dropped and counted: a client trickling its head
    /// a byte at a time (slowloris), or never reading the answer, holds a
    /// slot no longer than this.
    pub deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self { connections: 8, request_bytes: 8192, deadline: Duration::from_secs(5) }
    }
}

/// Serves `GET /metrics` on `listener` until the task is dropped.
///
/// A few lines of HTTP/1.1 by hand rather than an HTTP framework: one path,
/// one method, no bodies, no keep-alive — a framework would add dozens of
/// crates to a privileged daemon for that.
pub async fn serve(listener: TcpListener, exposition: Arc<Exposition>) {
    serve_with(listener, exposition, Limits::default()).await;
}

/// [`serve`] with the given limits (tests shorten them).
pub async fn serve_with(listener: TcpListener, exposition: Arc<Exposition>, limits: Limits) {
    // Its own netlink socket: a scrape never waits behind the control loop's.
    let net = match Net::connect() {
        Ok(n) => Some(Arc::new(n)),
        Err(e) => {
            tracing::warn!("qdisc statistics will be missing from /metrics: {e}");
            None
        }
    };
    let guards = exposition.guards();
    let slots = Arc::new(Semaphore::new(limits.connections));
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
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Closed unanswered: writing a 503 could itself block on a
            // client that does not read.
            GuardCounters::bump(&guards.metrics_refused);
            debug!(%peer, "metrics: too many connections, closed");
            continue;
        };
        let (exposition, net, guards) = (exposition.clone(), net.clone(), guards.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(limits.deadline, answer(stream, &exposition, net.as_deref(), limits))
                .await
            {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!(%peer, "metrics request: {e}"),
                Err(_) => {
                    GuardCounters::bump(&guards.metrics_timed_out);
                    debug!(%peer, "metrics request: not done within {:?}, dropped", limits.deadline);
                }
            }
            drop(slot);
        });
    }
}

async fn answer(
    mut stream: TcpStream,
    exposition: &Exposition,
    net: Option<&Net>,
    limits: Limits,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !request::complete(&head) && head.len() < limits.request_bytes {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let (status, content_type, body) = match request::route(&head) {
        Route::Metrics => match encode(&gather(exposition, net).await) {
            Ok(text) => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", text),
            Err(e) => ("500 Internal Server Error", "text/plain; charset=utf-8", format!("{e}\n")),
        },
        Route::NotFound => ("404 Not Found", "text/plain; charset=utf-8", "try /metrics\n".to_string()),
        Route::MethodNotAllowed => {
            ("405 Method Not Allowed", "text/plain; charset=utf-8", "GET only\n".to_string())
        }
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read as _, Write as _},
        net::SocketAddr,
    };

    use super::*;

    /// A server on a loopback port with `limits`, and its exposition.
    async fn server(limits: Limits) -> (SocketAddr, Arc<Exposition>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let exposition =
            Exposition::new(std::env::temp_dir().join("strata-no-such-pins"), Vec::new(), "static");
        tokio::spawn(serve_with(listener, exposition.clone(), limits));
        (addr, exposition)
    }

    /// A request on its own thread (blocking I/O): the answer's status line,
    /// or "" if the server closed without one.
    async fn ask(addr: SocketAddr, request: &'static [u8]) -> String {
        tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(addr).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
            let _ = s.write_all(request);
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            answer.lines().next().unwrap_or_default().to_string()
        })
        .await
        .expect("join")
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_are_closed_and_counted() {
        let limits = Limits { connections: 2, deadline: Duration::from_millis(400), ..Limits::default() };
        let (addr, exposition) = server(limits).await;
        // Two clients that send nothing hold both slots…
        let idle: Vec<_> = (0..2).map(|_| std::net::TcpStream::connect(addr).expect("connect")).collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        // …so a third is turned away without an answer.
        assert_eq!(ask(addr, b"GET /nothing HTTP/1.1\r\n\r\n").await, "");
        assert_eq!(exposition.guards().snapshot().metrics_refused, 1);
        // Past the deadline the idle ones are dropped, and a request is served again.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(exposition.guards().snapshot().metrics_timed_out, 2);
        assert_eq!(ask(addr, b"GET /nothing HTTP/1.1\r\n\r\n").await, "HTTP/1.1 404 Not Found");
        drop(idle);
    }

    #[tokio::test]
    async fn a_head_trickled_byte_by_byte_is_cut_off_at_the_deadline() {
        let limits = Limits { deadline: Duration::from_millis(300), ..Limits::default() };
        let (addr, exposition) = server(limits).await;
        let started = std::time::Instant::now();
        let closed = tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(addr).expect("connect");
            // One byte every 50 ms, never the end of the head: the server
            // must close well before this would end (10 s).
            for b in b"GET /metrics HTTP/1.1\r\nX-Slow: ".iter().cycle().take(200) {
                if s.write_all(&[*b]).is_err() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(50));
                let mut probe = [0u8; 1];
                s.set_nonblocking(true).expect("nonblocking");
                let gone = matches!(s.read(&mut probe), Ok(0));
                s.set_nonblocking(false).expect("blocking");
                if gone {
                    return true;
                }
            }
            false
        })
        .await
        .expect("join");
        assert!(closed && started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        assert_eq!(exposition.guards().snapshot().metrics_timed_out, 1);
    }

    #[tokio::test]
    async fn an_endless_head_is_read_only_up_to_the_limit() {
        let limits = Limits { request_bytes: 64, ..Limits::default() };
        let (addr, _) = server(limits).await;
        // No end of head within 64 bytes: answered from what was read.
        let line = ask(addr, b"PUT /metrics HTTP/1.1\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").await;
        assert_eq!(line, "HTTP/1.1 405 Method Not Allowed");
    }
}
