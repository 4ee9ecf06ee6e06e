//! Kernel uevents: devices appearing, vanishing and changing, as the kernel
//! announces them.
//!
//! Whenever a device is added, removed, bound to a driver or changes state,
//! the kernel multicasts a *uevent* on a `NETLINK_KOBJECT_UEVENT` socket: a
//! header `action@devpath`, then `KEY=VALUE` fields, each NUL-terminated
//! (`ACTION`, `DEVPATH`, `SUBSYSTEM`, `SEQNUM`, and per device `DEVTYPE`,
//! `INTERFACE`, `IFINDEX`, `PRODUCT`, …). A modem that resets on the USB
//! bus shows up as `remove` of its USB device, interfaces and network
//! interface, then `add` of all of them again, possibly under a new name.
//!
//! **Group 1, not udev.** The socket has two multicast groups: 1 carries the
//! kernel's own messages, 2 carries what udevd re-broadcasts after running
//! its rules (a different, binary-headed format with udev's properties
//! added). Strata listens to group 1: it works with no udevd at all, which
//! is the case on this machine and on the minimal boxes that go into cars,
//! and it is not delayed by rule processing. What udev would add (names
//! from rules, `ID_SERIAL`) we read from sysfs ourselves
//! ([`super::sysfs`]).
//!
//! **Network namespaces** (measured on Linux 6.18). Uevents of network
//! interfaces are *tagged* with the interface's namespace and delivered only
//! to uevent sockets opened in that namespace: a listener in the host does
//! not see a veth created in a lab namespace, and a listener in the lab's
//! edge namespace sees the edge's veths come and go. Uevents of every other
//! device (USB, PCI, …) are untagged and delivered to every namespace owned
//! by the initial user namespace, so a daemon in the edge namespace (made
//! with `ip netns add`) still sees a modem's USB device leave and return.
//! The namespace that counts is the one the socket was *opened* in.
//!
//! **Trust and loss.** Only messages from the kernel (sender port 0) are
//! taken; a privileged process could multicast into the group too.
//! Malformed messages are counted and skipped, never a panic. When
//! messages come faster than they are read the kernel drops them and says
//! so (`ENOBUFS`); that is counted and logged, and the caller should re-read
//! the state it cares about (sysfs, rtnetlink) rather than trust it has
//! seen every event. A large receive buffer makes that rare.
//!
//! The parser is hand-written rather than taken from the `kobject-uevent`
//! crate: that crate rejects actions it does not know (the kernel adds new
//! ones), needs the whole message to be UTF-8 before looking at it, and
//! does not check the header against the fields; the format is a few lines
//! to parse strictly.

use std::{collections::BTreeMap, io};

use netlink_sys::{AsyncSocket as _, AsyncSocketExt as _, SocketAddr, TokioSocket, protocols};
use tokio::sync::mpsc;

/// The kernel's multicast group (udevd's is 2).
const KERNEL_GROUP: u32 = 1;
/// Receive buffer asked for: a USB hub reset with four modems is a burst
/// of a few hundred messages of up to a few KiB each.
const RCVBUF_BYTES: usize = 4 << 20;
/// Largest message accepted: the kernel's field buffer is 2 KiB
/// (`UEVENT_BUFFER_SIZE`) and the header repeats the device path (at most
/// `PATH_MAX`).
const MAX_MESSAGE: usize = 8192;
/// Read buffer, larger than any message accepted, so a message that fills
/// it was truncated.
const RECV_BUF: usize = 2 * MAX_MESSAGE;
/// Most fields in a message: the kernel allows 64 (`UEVENT_NUM_ENVP`).
const MAX_FIELDS: usize = 128;

/// What happened to the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// The device appeared.
    Add,
    /// The device is gone.
    Remove,
    /// The device changed state (the fields say how).
    Change,
    /// The device was renamed or moved (`DEVPATH_OLD` is the old path).
    Move,
    /// A driver was bound to the device.
    Bind,
    /// The driver was unbound from the device.
    Unbind,
    /// Another action (`online`, `offline`, or one added later).
    Other(String),
}

impl Action {
    fn parse(text: &str) -> Self {
        match text {
            "add" => Self::Add,
            "remove" => Self::Remove,
            "change" => Self::Change,
            "move" => Self::Move,
            "bind" => Self::Bind,
            "unbind" => Self::Unbind,
            other => Self::Other(other.to_string()),
        }
    }
}

/// One kernel uevent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UEvent {
    /// What happened.
    pub action: Action,
    /// Path of the device under `/sys`, e.g. `/devices/virtual/net/lnk0`.
    /// Not unique across network namespaces.
    pub devpath: String,
    /// `SUBSYSTEM`: `net`, `usb`, `queues`, …
    pub subsystem: String,
    /// `DEVTYPE`: `wwan`, `wlan`, `usb_device`, `usb_interface`, …
    pub devtype: Option<String>,
    /// `INTERFACE`: the network interface's name (subsystem `net`).
    pub interface: Option<String>,
    /// `IFINDEX`: the network interface's index (subsystem `net`).
    pub ifindex: Option<u32>,
    /// `SEQNUM`: the kernel's event counter, increasing.
    pub seqnum: u64,
    /// Every field as sent, including the ones above.
    pub vars: BTreeMap<String, String>,
}

/// Why a message is not a kernel uevent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// Nothing received.
    #[error("empty message")]
    Empty,
    /// Longer than any kernel uevent.
    #[error("{0} bytes, more than a kernel uevent can be")]
    TooLarge(usize),
    /// The last field is not NUL-terminated (cut short).
    #[error("last field not terminated")]
    Unterminated,
    /// Not UTF-8.
    #[error("not UTF-8")]
    NotUtf8,
    /// The header is not `action@/devpath`.
    #[error("header is not action@/devpath")]
    BadHeader,
    /// A field is not `KEY=VALUE`.
    #[error("field without '='")]
    BadField,
    /// More fields than the kernel sends.
    #[error("more than {MAX_FIELDS} fields")]
    TooManyFields,
    /// A field every kernel uevent has is missing.
    #[error("no {0} field")]
    Missing(&'static str),
    /// A field's value cannot be what the kernel sends.
    #[error("{0} is not a number")]
    NotANumber(&'static str),
    /// The header and the fields disagree.
    #[error("header disagrees with the {0} field")]
    Inconsistent(&'static str),
}

/// Parses one message as the kernel sends it: `action@devpath\0KEY=VALUE\0…`.
pub fn parse(msg: &[u8]) -> Result<UEvent, ParseError> {
    if msg.is_empty() {
        return Err(ParseError::Empty);
    }
    if msg.len() > MAX_MESSAGE {
        return Err(ParseError::TooLarge(msg.len()));
    }
    let body = msg.strip_suffix(b"\0").ok_or(ParseError::Unterminated)?;
    let text = std::str::from_utf8(body).map_err(|_| ParseError::NotUtf8)?;
    let mut fields = text.split('\0');
    let header = fields.next().ok_or(ParseError::BadHeader)?;
    let (action, devpath) = header.split_once('@').ok_or(ParseError::BadHeader)?;
    if action.is_empty() || !devpath.starts_with('/') {
        return Err(ParseError::BadHeader);
    }

    let mut vars = BTreeMap::new();
    for (n, field) in fields.enumerate() {
        if n >= MAX_FIELDS {
            return Err(ParseError::TooManyFields);
        }
        let (key, value) = field.split_once('=').ok_or(ParseError::BadField)?;
        if key.is_empty() {
            return Err(ParseError::BadField);
        }
        vars.insert(key.to_string(), value.to_string());
    }

    let var = |key: &'static str| vars.get(key).map(String::as_str);
    if var("ACTION").is_some_and(|a| a != action) {
        return Err(ParseError::Inconsistent("ACTION"));
    }
    if var("DEVPATH").is_some_and(|d| d != devpath) {
        return Err(ParseError::Inconsistent("DEVPATH"));
    }
    let subsystem = var("SUBSYSTEM").ok_or(ParseError::Missing("SUBSYSTEM"))?.to_string();
    let seqnum = var("SEQNUM")
        .ok_or(ParseError::Missing("SEQNUM"))?
        .parse()
        .map_err(|_| ParseError::NotANumber("SEQNUM"))?;
    let ifindex =
        var("IFINDEX").map(|v| v.parse().map_err(|_| ParseError::NotANumber("IFINDEX"))).transpose()?;
    Ok(UEvent {
        action: Action::parse(action),
        devpath: devpath.to_string(),
        subsystem,
        devtype: var("DEVTYPE").map(str::to_string),
        interface: var("INTERFACE").map(str::to_string),
        ifindex,
        seqnum,
        vars,
    })
}

/// Why uevents cannot be received.
#[derive(Debug, thiserror::Error)]
pub enum UeventError {
    /// Called outside a tokio runtime.
    #[error("the uevent listener must be opened inside a tokio runtime")]
    NoRuntime,
    /// The socket could not be created.
    #[error(
        "cannot open a NETLINK_KOBJECT_UEVENT socket: {0} (netlink forbidden by a sandbox or seccomp \
         profile?); continuing without kernel uevents"
    )]
    Open(io::Error),
    /// The socket could not join the kernel's group.
    #[error("cannot subscribe to kernel uevents (netlink group {KERNEL_GROUP}): {0}")]
    Subscribe(io::Error),
    /// Receiving failed for a reason other than lost messages.
    #[error("receiving kernel uevents failed: {0}")]
    Recv(io::Error),
}

/// What a listener skipped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UeventCounters {
    /// Messages that did not parse, or were cut short.
    pub malformed: u64,
    /// Messages not sent by the kernel (ignored).
    pub foreign: u64,
    /// Times the kernel reported dropping messages (`ENOBUFS`); events were
    /// lost each time.
    pub overruns: u64,
}

/// A socket subscribed to kernel uevents in the network namespace it was
/// opened in.
pub struct UeventListener {
    socket: TokioSocket,
    buf: Vec<u8>,
    counters: UeventCounters,
}

impl std::fmt::Debug for UeventListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UeventListener").field("counters", &self.counters).finish_non_exhaustive()
    }
}

impl UeventListener {
    /// Opens and subscribes. Must run inside a tokio runtime; the socket
    /// belongs to the calling thread's network namespace from then on.
    pub fn open() -> Result<Self, UeventError> {
        // TokioSocket registers with the runtime's reactor and would panic
        // without one.
        tokio::runtime::Handle::try_current().map_err(|_| UeventError::NoRuntime)?;
        let mut socket = TokioSocket::new(protocols::NETLINK_KOBJECT_UEVENT).map_err(UeventError::Open)?;
        let raw = socket.socket_mut();
        raw.bind(&SocketAddr::new(0, KERNEL_GROUP)).map_err(UeventError::Subscribe)?;
        // Best effort: forcing past rmem_max needs CAP_NET_ADMIN; without
        // it the plain request is capped by rmem_max, still more than the
        // default.
        if nix::sys::socket::setsockopt(&*raw, nix::sys::socket::sockopt::RcvBufForce, &RCVBUF_BYTES).is_err()
        {
            let _ = raw.set_rx_buf_sz(RCVBUF_BYTES as libc::c_int);
        }
        Ok(Self { socket, buf: Vec::with_capacity(RECV_BUF), counters: UeventCounters::default() })
    }

    /// The next well-formed kernel uevent; malformed, foreign and lost
    /// messages are counted and skipped.
    pub async fn next(&mut self) -> Result<UEvent, UeventError> {
        loop {
            self.buf.clear();
            self.buf.reserve(RECV_BUF);
            match self.socket.recv_from(&mut self.buf).await {
                Ok(from) if from.port_number() != 0 => self.counters.foreign += 1,
                // A full buffer means the datagram was longer and cut.
                Ok(_) if self.buf.len() >= self.buf.capacity() => self.counters.malformed += 1,
                Ok(_) => match parse(&self.buf) {
                    Ok(event) => return Ok(event),
                    Err(e) => {
                        self.counters.malformed += 1;
                        tracing::debug!(error = %e, "skipping a malformed uevent");
                    }
                },
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    self.counters.overruns += 1;
                    tracing::warn!(
                        overruns = self.counters.overruns,
                        "kernel uevents were dropped (receive buffer full); state must be re-read"
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(UeventError::Recv(e)),
            }
        }
    }

    /// Sends every uevent to `tx` until the receiver is dropped (then
    /// `Ok`), or receiving fails.
    pub async fn forward(&mut self, tx: mpsc::Sender<UEvent>) -> Result<(), UeventError> {
        loop {
            let event = tokio::select! {
                event = self.next() => event?,
                () = tx.closed() => return Ok(()),
            };
            if tx.send(event).await.is_err() {
                return Ok(());
            }
        }
    }

    /// What was skipped so far.
    pub fn counters(&self) -> UeventCounters {
        self.counters
    }
}

/// Opens a listener in the current network namespace and forwards every
/// kernel uevent to `tx` until the receiver is dropped.
pub async fn watch(tx: mpsc::Sender<UEvent>) -> Result<(), UeventError> {
    UeventListener::open()?.forward(tx).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(fields: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for f in fields {
            out.extend_from_slice(f.as_bytes());
            out.push(0);
        }
        out
    }

    const VETH_ADD: &[&str] = &[
        "add@/devices/virtual/net/lnk0",
        "ACTION=add",
        "DEVPATH=/devices/virtual/net/lnk0",
        "SUBSYSTEM=net",
        "INTERFACE=lnk0",
        "IFINDEX=12",
        "SEQNUM=4711",
    ];

    #[test]
    fn a_net_device_add_parses_with_interface_and_index() {
        let ev = parse(&msg(VETH_ADD)).unwrap();
        assert_eq!(ev.action, Action::Add);
        assert_eq!(ev.devpath, "/devices/virtual/net/lnk0");
        assert_eq!(ev.subsystem, "net");
        assert_eq!((ev.interface.as_deref(), ev.ifindex, ev.seqnum), (Some("lnk0"), Some(12), 4711));
        assert_eq!(ev.devtype, None);
        assert_eq!(ev.vars.len(), 6);
    }

    #[test]
    fn a_modem_interface_and_other_actions() {
        let ev = parse(&msg(&[
            "remove@/devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1.2/1-1.2:1.4/net/wwan0",
            "ACTION=remove",
            "DEVPATH=/devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1.2/1-1.2:1.4/net/wwan0",
            "SUBSYSTEM=net",
            "DEVTYPE=wwan",
            "INTERFACE=wwan0",
            "IFINDEX=5",
            "SEQNUM=9",
        ]))
        .unwrap();
        assert_eq!((ev.action, ev.devtype.as_deref()), (Action::Remove, Some("wwan")));
        for (word, action) in [
            ("change", Action::Change),
            ("move", Action::Move),
            ("bind", Action::Bind),
            ("unbind", Action::Unbind),
            ("online", Action::Other("online".into())),
        ] {
            let header = format!("{word}@/devices/x");
            let action_field = format!("ACTION={word}");
            let ev = parse(&msg(&[&header, &action_field, "SUBSYSTEM=usb", "SEQNUM=1"])).unwrap();
            assert_eq!(ev.action, action);
            assert_eq!((ev.interface, ev.ifindex), (None, None));
        }
    }

    #[test]
    fn malformed_and_hostile_messages_are_errors_not_panics() {
        let mut huge = msg(VETH_ADD);
        huge.extend(std::iter::repeat_n(b'A', MAX_MESSAGE));
        huge.push(0);
        let mut unterminated = msg(VETH_ADD);
        unterminated.pop();
        let mut not_utf8 = msg(&["add@/devices/virtual/net/x", "SUBSYSTEM=net", "SEQNUM=1"]);
        not_utf8.extend_from_slice(b"INTERFACE=\xff\xfe\0");
        let many: Vec<String> = (0..=MAX_FIELDS).map(|i| format!("K{i}=v")).collect();
        let mut too_many = vec!["add@/devices/x".to_string()];
        too_many.extend(many);
        let too_many: Vec<&str> = too_many.iter().map(String::as_str).collect();

        let cases: Vec<(&str, Vec<u8>, ParseError)> = vec![
            ("empty", vec![], ParseError::Empty),
            ("only a NUL", vec![0], ParseError::BadHeader),
            ("huge", huge, ParseError::TooLarge(msg(VETH_ADD).len() + MAX_MESSAGE + 1)),
            ("missing final NUL", unterminated, ParseError::Unterminated),
            ("non-UTF-8", not_utf8, ParseError::NotUtf8),
            ("no @", msg(&["add/devices/x", "SUBSYSTEM=net", "SEQNUM=1"]), ParseError::BadHeader),
            ("empty action", msg(&["@/devices/x", "SUBSYSTEM=net", "SEQNUM=1"]), ParseError::BadHeader),
            ("relative devpath", msg(&["add@devices/x", "SUBSYSTEM=net", "SEQNUM=1"]), ParseError::BadHeader),
            ("udevd's format", b"libudev\0\xfe\xed\xca\xfe\0".to_vec(), ParseError::NotUtf8),
            ("field without =", msg(&["add@/devices/x", "SUBSYSTEM", "SEQNUM=1"]), ParseError::BadField),
            ("empty key", msg(&["add@/devices/x", "=v", "SUBSYSTEM=net", "SEQNUM=1"]), ParseError::BadField),
            ("empty field", msg(&["add@/devices/x", "", "SEQNUM=1"]), ParseError::BadField),
            ("too many fields", msg(&too_many), ParseError::TooManyFields),
            ("no subsystem", msg(&["add@/devices/x", "SEQNUM=1"]), ParseError::Missing("SUBSYSTEM")),
            ("no seqnum", msg(&["add@/devices/x", "SUBSYSTEM=net"]), ParseError::Missing("SEQNUM")),
            (
                "bad seqnum",
                msg(&["add@/devices/x", "SUBSYSTEM=net", "SEQNUM=-3"]),
                ParseError::NotANumber("SEQNUM"),
            ),
            (
                "bad ifindex",
                msg(&["add@/devices/x", "SUBSYSTEM=net", "SEQNUM=1", "IFINDEX=99999999999"]),
                ParseError::NotANumber("IFINDEX"),
            ),
            (
                "header says add, field says remove",
                msg(&["add@/devices/x", "ACTION=remove", "SUBSYSTEM=net", "SEQNUM=1"]),
                ParseError::Inconsistent("ACTION"),
            ),
            (
                "header and DEVPATH differ",
                msg(&["add@/devices/x", "DEVPATH=/devices/y", "SUBSYSTEM=net", "SEQNUM=1"]),
                ParseError::Inconsistent("DEVPATH"),
            ),
        ];
        for (name, bytes, expected) in cases {
            assert_eq!(parse(&bytes), Err(expected), "{name}");
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..12_000)) {
            let _ = parse(&bytes);
        }

        /// Random bytes rarely get past the header; flipped bytes of a real
        /// message reach every field check.
        #[test]
        fn a_damaged_real_message_never_panics(
            flips in proptest::collection::vec((proptest::num::usize::ANY, proptest::num::u8::ANY), 1..8),
            cut in proptest::num::usize::ANY,
        ) {
            let mut bytes = msg(VETH_ADD);
            for (at, byte) in flips {
                let at = at % bytes.len();
                bytes[at] = byte;
            }
            bytes.truncate(cut % (bytes.len() + 1));
            let _ = parse(&bytes);
        }
    }

    #[test]
    fn opening_outside_a_runtime_is_an_error_not_a_panic() {
        assert!(matches!(UeventListener::open(), Err(UeventError::NoRuntime)));
    }
}
