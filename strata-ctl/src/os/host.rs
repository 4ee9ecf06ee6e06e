//! The host the daemon runs on: what must hold before it starts, and the
//! process-wide facilities it takes for itself.
//!
//! * [`preflight`] — root, and a bpffs at `/sys/fs/bpf` for the pins
//!   (mounted when missing);
//! * [`InstanceLock`] — one daemon per instance name, since two would share
//!   (and fight over) the same pinned maps;
//! * [`private_mounts`] and [`namespace_sysfs`] — a sysfs that shows this
//!   process's network namespace, in a mount namespace of the daemon's own
//!   so the mount dies with it;
//! * [`cpu_time`] and [`random_u32`] — the two things the daemon asks the
//!   kernel about itself.

use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use tracing::{info, warn};

use crate::os::sysfs::SysfsMount;

/// Where instance locks, status sockets and sysfs mounts live.
pub const RUN_DIR: &str = "/run/strata";

/// Why the host cannot run the daemon.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// Attaching programs needs privileges.
    #[error("strata-ctl run needs root (CAP_NET_ADMIN and CAP_BPF to attach the data plane)")]
    NotRoot,
    /// No bpffs, and mounting one failed.
    #[error("/sys/fs/bpf is not a bpf filesystem and mounting one failed: {0}")]
    Bpffs(nix::Error),
    /// The lock file could not be created.
    #[error("{path}: {source}")]
    LockFile {
        /// The file or its directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another daemon holds the lock.
    #[error(
        "name: an instance named {name:?} is already running on this host ({}: {errno}); give each tunnel its own name",
        path.display()
    )]
    AlreadyRunning {
        /// The instance name.
        name: String,
        /// The lock file.
        path: PathBuf,
        /// `EWOULDBLOCK`, usually.
        errno: nix::Error,
    },
}

/// Checks the daemon can run here: root, and a bpffs for the pins (mounted
/// if missing).
pub fn preflight() -> Result<(), HostError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(HostError::NotRoot);
    }
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    let bpffs = mounts.lines().any(|l| {
        let mut f = l.split_whitespace();
        matches!((f.next(), f.next(), f.next()), (_, Some("/sys/fs/bpf"), Some("bpf")))
    });
    if !bpffs {
        nix::mount::mount(
            Some("bpf"),
            "/sys/fs/bpf",
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .map_err(HostError::Bpffs)?;
        info!("mounted bpffs at /sys/fs/bpf");
    }
    Ok(())
}

/// One daemon per instance name: an `flock` on `/run/strata/<name>.lock`,
/// released by the kernel however the daemon ends; the file is removed when
/// the lock is dropped (a crash leaves an unlocked file, which the next
/// start reuses).
#[derive(Debug)]
pub struct InstanceLock {
    path: PathBuf,
    _flock: nix::fcntl::Flock<fs::File>,
}

impl InstanceLock {
    /// Takes the lock of instance `name`, or says who holds it.
    pub fn take(name: &str) -> Result<Self, HostError> {
        let path = Path::new(RUN_DIR).join(format!("{name}.lock"));
        fs::create_dir_all(RUN_DIR)
            .map_err(|source| HostError::LockFile { path: PathBuf::from(RUN_DIR), source })?;
        let file =
            fs::File::create(&path).map_err(|source| HostError::LockFile { path: path.clone(), source })?;
        let flock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(
            |(_, errno)| HostError::AlreadyRunning { name: name.to_string(), path: path.clone(), errno },
        )?;
        Ok(Self { path, _flock: flock })
    }
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Gives the daemon a mount namespace of its own whose mounts do not
/// propagate back (slave): the sysfs [`namespace_sysfs`] may mount then
/// disappears with the process, however it ends — a SIGKILLed daemon used
/// to leave one mounted under /run/strata per run (seen after the test
/// suite: six). Everything else it uses (bpffs pins, /run/strata sockets)
/// is the same file system seen through a copied mount, so other processes
/// still see it. Failure is logged and the daemon goes on with shared
/// mounts (its own exit still unmounts).
pub fn private_mounts() {
    use nix::{
        mount::{MsFlags, mount},
        sched::{CloneFlags, unshare},
    };
    let result = unshare(CloneFlags::CLONE_NEWNS).and_then(|()| {
        mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_SLAVE, None::<&str>)
    });
    if let Err(e) = result {
        warn!("no private mount namespace ({e}): a mount the daemon makes outlives a crash");
    }
}

/// A sysfs whose `class/net` shows this process's network namespace (the
/// one where `tunnel` exists), and the mount made at `mount_at` for it if
/// `/sys` does not: sysfs shows the namespace of whoever mounted it, so a
/// daemon started with `nsenter --net` (the lab) sees another namespace's
/// interfaces in `/sys`. `None` (logged): links are recognised by name only.
pub fn namespace_sysfs(tunnel: &str, mount_at: &Path) -> Option<(PathBuf, Option<SysfsMount>)> {
    let ours = |root: &Path| root.join("class/net").join(tunnel).exists();
    if ours(Path::new("/sys")) {
        return Some(("/sys".into(), None));
    }
    match SysfsMount::mount(mount_at) {
        Ok(mount) if ours(mount.root()) => Some((mount.root().to_path_buf(), Some(mount))),
        Ok(_) => {
            warn!("no sysfs of this network namespace: links are recognised by interface name only");
            None
        }
        Err(e) => {
            warn!("no sysfs of this network namespace ({e}): links are recognised by interface name only");
            // The mount point made for it, if empty (nothing else removes it).
            let _ = fs::remove_dir(mount_at);
            None
        }
    }
}

/// CPU time (user + system) the daemon has used, all threads.
pub fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return Duration::ZERO;
        }
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec.max(0) as u64, (t.tv_usec.max(0) as u32) * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// A random number from getrandom(2).
pub fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    // getrandom(2) never fails for 4 bytes once the pool is initialised; fall
    // back to the clock rather than refuse to start.
    // SAFETY: writes at most 4 bytes into `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n == 4 {
        u32::from_ne_bytes(b)
    } else {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos())
    }
}
