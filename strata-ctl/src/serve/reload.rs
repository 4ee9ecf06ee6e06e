//! `strata-ctl reload --name NAME`: the daemon re-reads its configuration
//! file, on request over its status socket (the request line `reload`) as
//! on SIGHUP. The event loop applies the whole new configuration or none of
//! it ([`crate::config::change`] decides), and answers with the fields it
//! applied or why it refused, so the CLI can exit non-zero on a refusal.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use tokio::sync::{mpsc, oneshot};

/// The fields a reload applied, or why it refused the new file.
pub type Outcome = Result<Vec<String>, String>;

/// A reload asked for on the status socket; the event loop answers on it.
pub type Request = oneshot::Sender<Outcome>;

/// How long the CLI and the socket wait for the event loop's answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The status socket's reply to `reload` (one JSON line): asks the event
/// loop and waits for its answer. `trusted`: the client is root or the
/// daemon's own user — a reload changes how the tunnel sends, so a member of
/// the status group (who may read the status) may not ask for one.
pub(crate) async fn answer(requests: &mpsc::Sender<Request>, trusted: bool) -> String {
    let error = |why: &str| serde_json::json!({ "error": why }).to_string();
    if !trusted {
        return error("reload: only root or the daemon's user may ask for a reload");
    }
    let (tx, rx) = oneshot::channel();
    if requests.send(tx).await.is_err() {
        return error("reload: the daemon is stopping");
    }
    match tokio::time::timeout(TIMEOUT, rx).await {
        Ok(Ok(Ok(applied))) => serde_json::json!({ "reloaded": applied }).to_string(),
        Ok(Ok(Err(why))) => error(&why),
        _ => error("reload: the daemon did not answer in time"),
    }
}

/// Why `strata-ctl reload` failed.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// No daemon answers on the socket.
    #[error("instance {name:?}: cannot reach its daemon at {path}: {source}")]
    Connect {
        /// Instance name.
        name: String,
        /// The status socket.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The exchange broke off.
    #[error("instance {name:?}: the reload exchange failed: {source}")]
    Exchange {
        /// Instance name.
        name: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The daemon refused the new configuration (it keeps the running one).
    #[error("instance {name:?}: {why}")]
    Refused {
        /// Instance name.
        name: String,
        /// The daemon's reason.
        why: String,
    },
    /// The reply was not one this client understands.
    #[error("instance {name:?}: unexpected reply to reload: {reply}")]
    Reply {
        /// Instance name.
        name: String,
        /// What came back.
        reply: String,
    },
}

/// Asks the daemon `name`, whose status socket is `path`
/// (`status::socket_path`; passed in so that this module and the socket's
/// server, which answers through it, do not depend on each other), to reload
/// its configuration; returns the fields it applied.
pub fn request(name: &str, path: &Path) -> Result<Vec<String>, ReloadError> {
    let exchange = |source| ReloadError::Exchange { name: name.to_string(), source };
    let mut stream = UnixStream::connect(path).map_err(|source| ReloadError::Connect {
        name: name.to_string(),
        path: path.to_path_buf(),
        source,
    })?;
    // The daemon waits up to TIMEOUT for its event loop; a little more here.
    stream.set_read_timeout(Some(TIMEOUT + Duration::from_secs(1))).map_err(exchange)?;
    stream.write_all(b"reload\n").map_err(exchange)?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).map_err(exchange)?;
    let reply: serde_json::Value = serde_json::from_str(line.trim())
        .map_err(|_| ReloadError::Reply { name: name.to_string(), reply: line.trim().to_string() })?;
    if let Some(why) = reply["error"].as_str() {
        return Err(ReloadError::Refused { name: name.to_string(), why: why.to_string() });
    }
    let applied = reply["reloaded"]
        .as_array()
        .ok_or_else(|| ReloadError::Reply { name: name.to_string(), reply: line.trim().to_string() })?;
    Ok(applied.iter().filter_map(|f| f.as_str().map(str::to_string)).collect())
}
