//! Dropping capabilities once set-up is done.
//!
//! Set-up needs CAP_BPF and CAP_PERFMON (creating maps, loading programs)
//! and CAP_NET_ADMIN (the TUN device, addresses, routes, rules, attaching
//! programs). Running, the daemon only reads and writes maps through the
//! descriptors it holds — which needs no capability — and keeps following
//! the network: routes, rules, attaching its loaded programs to an
//! interface that comes back. So it keeps CAP_NET_ADMIN and drops every
//! other capability from its effective, permitted, inheritable and ambient
//! sets; a compromised daemon cannot load a program or take them back.
//!
//! By the `capget`/`capset` system calls through `libc` rather than the
//! `caps` crate: two calls with a fixed layout (version 3, two 32-bit
//! words per set) are fewer lines than a dependency's API, and the crate is
//! not among the workspace's vetted dependencies.

use std::{
    io,
    sync::atomic::{AtomicU32, AtomicUsize, Ordering},
};

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets in two words.
const VERSION_3: u32 = 0x2008_0522;

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct Header {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct` (one per 32-bit word).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// CAP_NET_ADMIN's number.
pub const CAP_NET_ADMIN: u32 = 12;
/// CAP_SYS_ADMIN's number.
pub const CAP_SYS_ADMIN: u32 = 21;

/// The effective, permitted and inheritable sets of this thread.
fn get() -> io::Result<[Data; 2]> {
    let mut header = Header { version: VERSION_3, pid: 0 };
    let mut data = [Data::default(); 2];
    // SAFETY: capget with a version-3 header and room for its two words.
    let ret = unsafe { libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()) };
    if ret == 0 { Ok(data) } else { Err(io::Error::last_os_error()) }
}

/// The sets every thread is to keep (permitted = effective; inheritable
/// ⊆ them), and how many threads have applied them.
static TARGET: [AtomicU32; 6] = [const { AtomicU32::new(0) }; 6];
static APPLIED: AtomicUsize = AtomicUsize::new(0);

/// `capset` of [`TARGET`] on the calling thread: async-signal-safe (one
/// system call, atomics only).
fn apply_target() -> bool {
    let mut header = Header { version: VERSION_3, pid: 0 };
    let data = [
        Data {
            effective: TARGET[0].load(Ordering::SeqCst),
            permitted: TARGET[1].load(Ordering::SeqCst),
            inheritable: TARGET[2].load(Ordering::SeqCst),
        },
        Data {
            effective: TARGET[3].load(Ordering::SeqCst),
            permitted: TARGET[4].load(Ordering::SeqCst),
            inheritable: TARGET[5].load(Ordering::SeqCst),
        },
    ];
    // SAFETY: capset with a version-3 header and its two words.
    unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) == 0 }
}

extern "C" fn on_broadcast(_: libc::c_int) {
    if apply_target() {
        APPLIED.fetch_add(1, Ordering::SeqCst);
    }
}

/// The permitted mask of thread `tid` of this process, from /proc.
fn permitted_of(tid: &str) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status"))?;
    status
        .lines()
        .find_map(|l| u64::from_str_radix(l.strip_prefix("CapPrm:")?.trim(), 16).ok())
        .ok_or_else(|| io::Error::other(format!("no CapPrm for thread {tid}")))
}

/// Keeps only the capabilities numbered in `keep` in every thread of the
/// process (effective, permitted, inheritable; the ambient set cleared).
/// Returns the permitted mask before and after.
///
/// Capabilities belong to threads and `capset` changes the caller's only,
/// while the daemon's runtime already runs several threads: each is sent a
/// real-time signal whose handler makes the same `capset` (what libpsx does
/// for C programs), then every thread's `CapPrm` is read back from /proc —
/// a thread left holding more is an error, not a silent half-drop. Threads
/// started later inherit the reduced sets.
pub fn keep_only(keep: &[u32]) -> io::Result<(u64, u64)> {
    let before = get()?;
    let mask = keep.iter().fold(0u64, |m, &c| m | (1u64 << c));
    for (word, data) in before.iter().enumerate() {
        let part = (mask >> (32 * word)) as u32;
        TARGET[3 * word].store(data.effective & part, Ordering::SeqCst);
        TARGET[3 * word + 1].store(data.permitted & part, Ordering::SeqCst);
        TARGET[3 * word + 2].store(data.inheritable & part, Ordering::SeqCst);
    }
    let signal = libc::SIGRTMIN() + 3;
    // SAFETY: installs a handler that only makes a system call and touches atomics.
    let previous = unsafe { libc::signal(signal, on_broadcast as *const () as libc::sighandler_t) };
    if previous == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: gettid and getpid have no preconditions.
    let (own, pid) = unsafe { (libc::gettid(), libc::getpid()) };
    let mut sent = 0;
    for entry in std::fs::read_dir("/proc/self/task")?.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse::<libc::pid_t>().ok()) else {
            continue;
        };
        if tid == own {
            continue;
        }
        // SAFETY: tgkill with this process's id and one of its threads.
        if unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, signal) } == 0 {
            sent += 1;
        }
    }
    if !apply_target() {
        return Err(io::Error::last_os_error());
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while APPLIED.load(Ordering::SeqCst) < sent && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) };
    let after =
        u64::from(TARGET[1].load(Ordering::SeqCst)) | (u64::from(TARGET[4].load(Ordering::SeqCst)) << 32);
    for entry in std::fs::read_dir("/proc/self/task")?.flatten() {
        let tid = entry.file_name().to_string_lossy().into_owned();
        // A thread that ended meanwhile has no status: nothing to hold.
        let Ok(held) = permitted_of(&tid) else { continue };
        if held & !after != 0 {
            return Err(io::Error::other(format!("thread {tid} still holds capabilities {held:#x}")));
        }
    }
    let permitted = u64::from(before[0].permitted) | (u64::from(before[1].permitted) << 32);
    Ok((permitted, after))
}
