//! What sysfs says about one network interface.
//!
//! Every network interface has a directory `class/net/<name>` in sysfs. For
//! a real device it holds a `device` link to the hardware behind it: for a
//! USB modem that is one USB *interface* (`1-1.2:1.4`), whose parent is the
//! USB *device* (`1-1.2`, the port path: bus 1, root port 1, hub port 2),
//! which carries `idVendor`, `idProduct` and, on most modems, `serial`. The
//! interface's `driver` link names the kernel driver (`qmi_wwan`,
//! `cdc_mbim`, `cdc_ether`, …). A virtual interface (veth, tun, a bridge)
//! has no `device` link at all. The interface directory itself says how
//! frames look (`type`: 1 Ethernet, 65534 none, i.e. raw IP as modems in
//! QMI raw-IP or MBIM mode use), the MTU, the link speed where the driver
//! knows it, the MAC address and how it was assigned, and in `uevent` the
//! device type (`DEVTYPE=wwan`, `wlan`, …).
//!
//! [`LinkFacts::read`] gathers those facts from a sysfs tree rooted anywhere
//! (`/sys` in production, a fixture directory in tests). A missing or
//! unreadable attribute is `None`: drivers differ in what they expose, and
//! a fact we cannot read is a fact we do not have, not a failure. Only a
//! missing interface directory is an error.
//!
//! **Sysfs and network namespaces.** The `class/net` view of a sysfs mount
//! belongs to the network namespace of the process that *mounted* it, not
//! of the process reading it. A daemon moved into a namespace with only
//! `setns(CLONE_NEWNET)` (`nsenter --net`, as the lab starts Strata, so the
//! host's `/sys/fs/bpf` stays visible) still sees the host's interfaces
//! under `/sys`. `ip netns exec` remounts `/sys` for its child, which fixes
//! that but hides the pinned maps. [`SysfsMount`] is the third way: mount a
//! sysfs of one's own while in the namespace, anywhere, and read from there.
//! [`LinkFacts::ifindex`] lets a caller check that a tree matches the
//! namespace it is in (compare with the kernel's index for the name).

use std::{
    fs,
    io::{self, Read as _},
    path::{Path, PathBuf},
};

/// `ARPHRD_ETHER`: Ethernet framing.
const ARPHRD_ETHER: u16 = 1;
/// `ARPHRD_RAWIP`: raw IP (some modem drivers, e.g. `mhi_net`, `rmnet`).
const ARPHRD_RAWIP: u16 = 519;
/// `ARPHRD_NONE`: no link-layer header; raw IP for `qmi_wwan` in raw-IP
/// mode and `cdc_mbim` (also tun and WireGuard, which are virtual).
const ARPHRD_NONE: u16 = 65534;
/// Sysfs attributes are at most a page; anything longer is not sysfs.
const MAX_ATTR: u64 = 4096;
/// `IFNAMSIZ` minus the terminating NUL.
const MAX_IFNAME: usize = 15;

/// Why the facts of an interface could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    /// The name cannot be an interface name (and must not become a path).
    #[error("{0:?} is not a valid interface name")]
    InvalidName(String),
    /// No `class/net/<name>` in this sysfs tree.
    #[error(
        "interface {ifname:?} not found at {} ({source}); if it lives in another network \
         namespace, read from a sysfs mounted in that namespace",
        path.display()
    )]
    NoInterface {
        /// The interface asked for.
        ifname: String,
        /// The directory that was looked for.
        path: PathBuf,
        /// What the file system said.
        source: io::Error,
    },
    /// A sysfs for the current network namespace could not be mounted.
    #[error("cannot mount sysfs at {}: {source}", path.display())]
    Mount {
        /// Where it was to be mounted.
        path: PathBuf,
        /// What the kernel said.
        source: io::Error,
    },
}

/// The bus the device behind an interface hangs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bus {
    /// A USB device (modems, phones tethering, USB Ethernet adapters).
    Usb,
    /// A PCI device, directly or through a transport such as virtio.
    Pci,
    /// No device at all: veth, tun, bridges, loopback.
    Virtual,
    /// Another bus (SDIO, platform, …), by its subsystem name.
    Other(String),
}

/// How packets are framed on the interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No link-layer header: IP packets as they are.
    RawIp,
    /// Ethernet frames (including modems that emulate Ethernet).
    Ethernet,
    /// Another `ARPHRD_*` link-layer type.
    Other(u16),
}

/// How the interface's MAC address came to be (`addr_assign_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrAssign {
    /// Burnt in or read from the device (0).
    Permanent,
    /// Made up at random, new at every enumeration (1).
    Random,
    /// Borrowed from another device (2).
    Stolen,
    /// Set by someone after creation (3).
    Set,
}

impl AddrAssign {
    fn from_sysfs(value: u8) -> Option<Self> {
        match value {
            0 => Some(Self::Permanent),
            1 => Some(Self::Random),
            2 => Some(Self::Stolen),
            3 => Some(Self::Set),
            _ => None,
        }
    }

    /// Whether the address survives re-enumeration: permanent, or set by an
    /// administrator (who sets it again). A random one is new each time and
    /// a stolen one belongs to another device.
    pub fn is_stable(self) -> bool {
        matches!(self, Self::Permanent | Self::Set)
    }
}

/// The USB device behind an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsbDevice {
    /// Port path, e.g. `1-1.2`: bus 1, root port 1, hub port 2. Stable as
    /// long as the modem stays plugged into the same port.
    pub port_path: String,
    /// `idVendor`.
    pub vendor_id: u16,
    /// `idProduct`.
    pub product_id: u16,
    /// `serial`, when the device has one (most modems report their IMEI or
    /// a unit serial; cheap adapters often none).
    pub serial: Option<String>,
    /// `manufacturer` string.
    pub manufacturer: Option<String>,
    /// `product` string.
    pub product: Option<String>,
}

/// What sysfs tells about one network interface. `None` means not exposed
/// or not readable, never "no".
#[derive(Clone, Debug, PartialEq)]
pub struct LinkFacts {
    /// The interface name the facts were read for.
    pub ifname: String,
    /// Interface index in the namespace the sysfs tree belongs to.
    pub ifindex: Option<u32>,
    /// Bus of the device behind the interface.
    pub bus: Bus,
    /// Kernel driver of that device (`qmi_wwan`, `r8152`, …); `None` for
    /// virtual interfaces, whose kind sysfs does not name (rtnetlink's
    /// link info does: `veth`, `tun`, …).
    pub driver: Option<String>,
    /// `DEVTYPE` from the interface's uevent: `wwan`, `wlan`, `bridge`, …
    pub devtype: Option<String>,
    /// Whether the interface has wireless extensions or a `phy80211` link.
    pub wireless: bool,
    /// Frame format, from `type` (and `qmi/raw_ip` for `qmi_wwan`).
    pub framing: Option<Framing>,
    /// MTU in bytes.
    pub mtu: Option<u32>,
    /// Link speed in Mbit/s, where the driver knows it (not for modems).
    pub speed_mbps: Option<u32>,
    /// MAC address, lower case, when the interface has a non-zero one.
    pub mac: Option<String>,
    /// How the MAC address was assigned.
    pub addr_assign: Option<AddrAssign>,
    /// The USB device, when the interface is on USB.
    pub usb: Option<UsbDevice>,
}

impl LinkFacts {
    /// Reads the facts of `ifname` from the sysfs tree at `root` (`/sys`).
    pub fn read(root: &Path, ifname: &str) -> Result<Self, FactsError> {
        if !valid_ifname(ifname) {
            return Err(FactsError::InvalidName(ifname.to_string()));
        }
        let link = root.join("class/net").join(ifname);
        let if_dir = fs::canonicalize(&link).map_err(|source| FactsError::NoInterface {
            ifname: ifname.to_string(),
            path: link.clone(),
            source,
        })?;
        // Ancestors are only followed inside the tree, so a fixture (or a
        // sysfs with odd links) never sends the walk into the host's files.
        let top = fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
        let device = fs::canonicalize(if_dir.join("device")).ok().filter(|d| d.starts_with(&top));

        let uevent = read_attr(&if_dir, "uevent").unwrap_or_default();
        let uevent_var = |key: &str| {
            uevent.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('=')).map(str::to_string)
        };
        let ifindex =
            read_attr(&if_dir, "ifindex").or_else(|| uevent_var("IFINDEX")).and_then(|v| v.parse().ok());

        let (bus, driver, usb) = match &device {
            None => (Bus::Virtual, None, None),
            Some(dev) => {
                let bus = bus_of(dev, &top);
                let usb = if bus == Bus::Usb { usb_device(dev, &top) } else { None };
                (bus, link_name(&dev.join("driver")), usb)
            }
        };

        let arp_type = read_attr(&if_dir, "type").and_then(|v| v.parse::<u16>().ok());
        // qmi_wwan switches between Ethernet emulation and raw IP at run
        // time; its own switch is the authority when present.
        let qmi_raw_ip = read_attr(&if_dir, "qmi/raw_ip").map(|v| v.eq_ignore_ascii_case("y"));
        let framing = match (qmi_raw_ip, arp_type) {
            (Some(true), _) => Some(Framing::RawIp),
            (_, Some(ARPHRD_NONE | ARPHRD_RAWIP)) => Some(Framing::RawIp),
            (_, Some(ARPHRD_ETHER)) => Some(Framing::Ethernet),
            (_, Some(other)) => Some(Framing::Other(other)),
            (_, None) => None,
        };

        Ok(Self {
            ifname: ifname.to_string(),
            ifindex,
            bus,
            driver,
            devtype: uevent_var("DEVTYPE"),
            wireless: if_dir.join("wireless").is_dir() || if_dir.join("phy80211").exists(),
            framing,
            mtu: read_attr(&if_dir, "mtu").and_then(|v| v.parse().ok()),
            // -1 (unknown) and reads that fail with EINVAL (link down, no
            // ethtool support) both mean "not known".
            speed_mbps: read_attr(&if_dir, "speed")
                .and_then(|v| v.parse::<i64>().ok())
                .filter(|&s| s > 0)
                .and_then(|s| u32::try_from(s).ok()),
            mac: read_attr(&if_dir, "address").and_then(normalise_mac),
            addr_assign: read_attr(&if_dir, "addr_assign_type")
                .and_then(|v| v.parse().ok())
                .and_then(AddrAssign::from_sysfs),
            usb,
        })
    }
}

/// A sysfs mounted while in the calling thread's network namespace, so its
/// `class/net` shows that namespace's interfaces whatever namespace the
/// reader is in later. The mount is made in the caller's mount namespace,
/// visible to its other processes, and unmounted (lazily) when dropped.
/// Needs `CAP_SYS_ADMIN`. The namespace that counts is the calling
/// *thread's* (sysfs takes it from the mounting task), so a thread that
/// entered a namespace with `setns` can mount for it.
#[derive(Debug)]
pub struct SysfsMount {
    path: PathBuf,
}

impl SysfsMount {
    /// Mounts a read-only sysfs at `at` (created if missing).
    pub fn mount(at: &Path) -> Result<Self, FactsError> {
        use nix::mount::{MsFlags, mount};
        let failed = |source: io::Error| FactsError::Mount { path: at.to_path_buf(), source };
        fs::create_dir_all(at).map_err(failed)?;
        let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        mount(Some("sysfs"), at, Some("sysfs"), flags, None::<&str>)
            .map_err(|errno| failed(io::Error::from(errno)))?;
        Ok(Self { path: at.to_path_buf() })
    }

    /// The root to pass to [`LinkFacts::read`].
    pub fn root(&self) -> &Path {
        &self.path
    }
}

impl Drop for SysfsMount {
    fn drop(&mut self) {
        // Detached, so a reader still holding a file does not keep the
        // mount busy; the directory is left for whoever created it.
        let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// The kernel's rule (`dev_valid_name`), which also keeps the name from
/// walking out of `class/net`.
fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_IFNAME
        && name != "."
        && name != ".."
        && !name.bytes().any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
}

/// The nearest USB or PCI ancestor decides (a USB modem on a PCI xHCI
/// controller is USB; virtio-net's device is on the virtio bus, whose
/// parent is PCI); otherwise the device's own subsystem.
fn bus_of(device: &Path, top: &Path) -> Bus {
    for dir in device.ancestors().take_while(|d| d.starts_with(top) && *d != top) {
        match link_name(&dir.join("subsystem")).as_deref() {
            Some("usb") => return Bus::Usb,
            Some("pci") => return Bus::Pci,
            _ => {}
        }
    }
    Bus::Other(link_name(&device.join("subsystem")).unwrap_or_else(|| "unknown".to_string()))
}

/// The USB device is the nearest ancestor with an `idVendor`: the network
/// function is one of its interfaces (`1-1.2:1.4`), and a hub above it has
/// its own `idVendor`, so nearest matters.
fn usb_device(device: &Path, top: &Path) -> Option<UsbDevice> {
    let dir = device
        .ancestors()
        .take_while(|d| d.starts_with(top) && *d != top)
        .find(|d| d.join("idVendor").is_file())?;
    let hex = |name: &str| read_attr(dir, name).and_then(|v| u16::from_str_radix(&v, 16).ok());
    Some(UsbDevice {
        port_path: dir.file_name()?.to_string_lossy().into_owned(),
        vendor_id: hex("idVendor")?,
        product_id: hex("idProduct")?,
        serial: read_attr(dir, "serial"),
        manufacturer: read_attr(dir, "manufacturer"),
        product: read_attr(dir, "product"),
    })
}

/// The last component of a symlink's target (`…/drivers/qmi_wwan`).
fn link_name(link: &Path) -> Option<String> {
    let target = fs::read_link(link).ok()?;
    Some(target.file_name()?.to_string_lossy().into_owned())
}

/// One attribute, trimmed; `None` if absent, unreadable or empty. Strings
/// from devices (USB descriptors) are not guaranteed UTF-8: kept lossily.
fn read_attr(dir: &Path, name: &str) -> Option<String> {
    let mut bytes = Vec::new();
    fs::File::open(dir.join(name)).ok()?.take(MAX_ATTR).read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes).trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// Lower case; an all-zero address (raw-IP devices without a MAC) is none.
fn normalise_mac(text: String) -> Option<String> {
    let mac = text.to_ascii_lowercase();
    let zero = mac.split(':').all(|octet| octet.bytes().all(|b| b == b'0'));
    (!zero).then_some(mac)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// A sysfs-shaped tree in a temporary directory, removed on drop.
    struct Fixture {
        root: PathBuf,
    }

    impl Fixture {
        fn new(name: &str) -> Self {
            let root = std::env::temp_dir().join(format!("strata-sysfs-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            fs::create_dir_all(root.join("class/net")).unwrap();
            Self { root }
        }

        fn file(&self, rel: &str, text: &str) {
            let path = self.root.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }

        /// A symlink at `rel` pointing at the tree path `target`, written
        /// relative as the kernel does.
        fn link(&self, rel: &str, target: &str) {
            let path = self.root.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            let up = "../".repeat(rel.matches('/').count());
            symlink(format!("{up}{target}"), path).unwrap();
        }

        /// An interface directory at `devpath` with the attributes every
        /// interface has, and its `class/net` link.
        fn interface(&self, devpath: &str, ifname: &str, attrs: &[(&str, &str)]) {
            fs::create_dir_all(self.root.join(devpath)).unwrap();
            self.link(&format!("class/net/{ifname}"), devpath);
            for (name, value) in attrs {
                self.file(&format!("{devpath}/{name}"), &format!("{value}\n"));
            }
        }

        fn read(&self, ifname: &str) -> LinkFacts {
            LinkFacts::read(&self.root, ifname).unwrap()
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.root);
        }
    }

    /// A Quectel EC25 in QMI raw-IP mode behind port 2 of a hub on root
    /// port 1 of an xHCI controller: the layout of a car's modem box.
    fn qmi_modem_behind_hub(fx: &Fixture) {
        let xhci = "devices/pci0000:00/0000:00:14.0";
        fx.link(&format!("{xhci}/subsystem"), "bus/pci");
        fx.link(&format!("{xhci}/driver"), "bus/pci/drivers/xhci_hcd");
        let hub = format!("{xhci}/usb1/1-1");
        fx.file(&format!("{hub}/idVendor"), "05e3\n");
        fx.file(&format!("{hub}/idProduct"), "0610\n");
        fx.link(&format!("{hub}/subsystem"), "bus/usb");
        let modem = format!("{hub}/1-1.2");
        fx.file(&format!("{modem}/idVendor"), "2c7c\n");
        fx.file(&format!("{modem}/idProduct"), "0125\n");
        fx.file(&format!("{modem}/serial"), "a1b2c3d4\n");
        fx.file(&format!("{modem}/manufacturer"), "Quectel\n");
        fx.file(&format!("{modem}/product"), "EC25-E\n");
        fx.link(&format!("{modem}/subsystem"), "bus/usb");
        let function = format!("{modem}/1-1.2:1.4");
        fx.file(&format!("{function}/bInterfaceNumber"), "04\n");
        fx.link(&format!("{function}/subsystem"), "bus/usb");
        fx.link(&format!("{function}/driver"), "bus/usb/drivers/qmi_wwan");
        let net = format!("{function}/net/wwan0");
        fx.interface(
            &net,
            "wwan0",
            &[
                ("uevent", "DEVTYPE=wwan\nINTERFACE=wwan0\nIFINDEX=5"),
                ("ifindex", "5"),
                ("type", "65534"),
                ("mtu", "1500"),
                ("address", ""),
                ("addr_assign_type", "0"),
                ("qmi/raw_ip", "Y"),
            ],
        );
        fx.link(&format!("{net}/device"), &function);
        fx.link(&format!("{net}/subsystem"), "class/net");
    }

    #[test]
    fn a_qmi_modem_behind_a_hub_is_usb_raw_ip_wwan_with_its_own_port_path() {
        let fx = Fixture::new("qmi");
        qmi_modem_behind_hub(&fx);
        let facts = fx.read("wwan0");
        assert_eq!(facts.bus, Bus::Usb);
        assert_eq!(facts.driver.as_deref(), Some("qmi_wwan"));
        assert_eq!(facts.devtype.as_deref(), Some("wwan"));
        assert_eq!(facts.framing, Some(Framing::RawIp));
        assert_eq!(facts.mtu, Some(1500));
        assert_eq!(facts.ifindex, Some(5));
        assert_eq!(facts.speed_mbps, None);
        assert_eq!(facts.mac, None, "raw-IP devices have no MAC");
        assert!(!facts.wireless);
        // The modem, not the hub above it nor the interface below it.
        assert_eq!(
            facts.usb,
            Some(UsbDevice {
                port_path: "1-1.2".into(),
                vendor_id: 0x2c7c,
                product_id: 0x0125,
                serial: Some("a1b2c3d4".into()),
                manufacturer: Some("Quectel".into()),
                product: Some("EC25-E".into()),
            })
        );
    }

    #[test]
    fn qmi_raw_ip_switch_wins_over_a_stale_type_and_missing_files_are_none() {
        let fx = Fixture::new("qmi-eth");
        qmi_modem_behind_hub(&fx);
        let net = "devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1.2/1-1.2:1.4/net/wwan0";
        fx.file(&format!("{net}/type"), "1\n");
        fx.file(&format!("{net}/qmi/raw_ip"), "N\n");
        assert_eq!(fx.read("wwan0").framing, Some(Framing::Ethernet));
        fx.file(&format!("{net}/qmi/raw_ip"), "Y\n");
        assert_eq!(fx.read("wwan0").framing, Some(Framing::RawIp));

        for gone in ["type", "qmi/raw_ip", "mtu", "uevent", "ifindex", "addr_assign_type"] {
            fs::remove_file(fx.root.join(net).join(gone)).unwrap();
        }
        let modem = "devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1.2";
        fs::remove_file(fx.root.join(modem).join("serial")).unwrap();
        let facts = fx.read("wwan0");
        assert_eq!((facts.framing, facts.mtu, facts.ifindex, facts.devtype), (None, None, None, None));
        assert_eq!(facts.addr_assign, None);
        let usb = facts.usb.unwrap();
        assert_eq!((usb.port_path.as_str(), usb.serial), ("1-1.2", None));
    }

    #[test]
    fn a_cdc_ether_modem_has_ethernet_framing_and_a_permanent_mac() {
        let fx = Fixture::new("cdc");
        let modem = "devices/pci0000:00/0000:00:14.0/usb2/2-1";
        fx.file(&format!("{modem}/idVendor"), "12d1\n");
        fx.file(&format!("{modem}/idProduct"), "14dc\n");
        fx.file(&format!("{modem}/product"), "HUAWEI_MOBILE\n");
        fx.link(&format!("{modem}/subsystem"), "bus/usb");
        let function = format!("{modem}/2-1:1.0");
        fx.link(&format!("{function}/subsystem"), "bus/usb");
        fx.link(&format!("{function}/driver"), "bus/usb/drivers/cdc_ether");
        let net = format!("{function}/net/usb0");
        fx.interface(
            &net,
            "usb0",
            &[
                ("uevent", "INTERFACE=usb0\nIFINDEX=7"),
                ("type", "1"),
                ("mtu", "1500"),
                ("speed", "-1"),
                ("address", "0C:5B:8F:27:9A:64"),
                ("addr_assign_type", "0"),
            ],
        );
        fx.link(&format!("{net}/device"), &function);
        let facts = fx.read("usb0");
        assert_eq!(facts.bus, Bus::Usb);
        assert_eq!(facts.driver.as_deref(), Some("cdc_ether"));
        assert_eq!(facts.devtype, None);
        assert_eq!(facts.framing, Some(Framing::Ethernet));
        assert_eq!(facts.speed_mbps, None, "-1 is unknown");
        assert_eq!(facts.mac.as_deref(), Some("0c:5b:8f:27:9a:64"));
        assert_eq!(facts.addr_assign, Some(AddrAssign::Permanent));
        let usb = facts.usb.unwrap();
        assert_eq!((usb.port_path.as_str(), usb.vendor_id, usb.product_id), ("2-1", 0x12d1, 0x14dc));
        assert_eq!((usb.serial, usb.manufacturer), (None, None));
    }

    #[test]
    fn a_pci_nic_has_speed_driver_and_no_usb_identity() {
        let fx = Fixture::new("pci");
        let nic = "devices/pci0000:00/0000:00:1c.0/0000:02:00.0";
        fx.link(&format!("{nic}/subsystem"), "bus/pci");
        fx.link(&format!("{nic}/driver"), "bus/pci/drivers/igc");
        fx.file(&format!("{nic}/vendor"), "0x8086\n");
        let net = format!("{nic}/net/enp2s0");
        fx.interface(
            &net,
            "enp2s0",
            &[
                ("uevent", "INTERFACE=enp2s0\nIFINDEX=2"),
                ("type", "1"),
                ("mtu", "9000"),
                ("speed", "2500"),
                ("address", "a8:a1:59:00:11:22"),
                ("addr_assign_type", "0"),
            ],
        );
        fx.link(&format!("{net}/device"), nic);
        let facts = fx.read("enp2s0");
        assert_eq!(facts.bus, Bus::Pci);
        assert_eq!(facts.driver.as_deref(), Some("igc"));
        assert_eq!((facts.speed_mbps, facts.mtu), (Some(2500), Some(9000)));
        assert_eq!(facts.usb, None);
    }

    #[test]
    fn a_virtio_nic_is_on_pci_through_its_transport_and_wifi_is_wireless() {
        let fx = Fixture::new("virtio");
        let pci = "devices/pci0000:00/0000:00:03.0";
        fx.link(&format!("{pci}/subsystem"), "bus/pci");
        let virtio = format!("{pci}/virtio2");
        fx.link(&format!("{virtio}/subsystem"), "bus/virtio");
        fx.link(&format!("{virtio}/driver"), "bus/virtio/drivers/virtio_net");
        fx.interface(&format!("{virtio}/net/eth0"), "eth0", &[("type", "1")]);
        fx.link(&format!("{virtio}/net/eth0/device"), &virtio);
        let facts = fx.read("eth0");
        assert_eq!((facts.bus, facts.driver.as_deref()), (Bus::Pci, Some("virtio_net")));

        let sdio = "devices/platform/soc/mmc1/mmc1:0001/mmc1:0001:1";
        fx.link(&format!("{sdio}/subsystem"), "bus/sdio");
        fx.link(&format!("{sdio}/driver"), "bus/sdio/drivers/brcmfmac");
        fx.interface(&format!("{sdio}/net/wlan0"), "wlan0", &[("uevent", "DEVTYPE=wlan\nINTERFACE=wlan0")]);
        fx.link(&format!("{sdio}/net/wlan0/device"), sdio);
        fs::create_dir_all(fx.root.join(sdio).join("net/wlan0/wireless")).unwrap();
        let facts = fx.read("wlan0");
        assert_eq!(facts.bus, Bus::Other("sdio".into()));
        assert_eq!((facts.devtype.as_deref(), facts.wireless), (Some("wlan"), true));
    }

    #[test]
    fn a_veth_is_virtual_with_a_random_mac() {
        let fx = Fixture::new("veth");
        fx.interface(
            "devices/virtual/net/lnk0",
            "lnk0",
            &[
                ("uevent", "INTERFACE=lnk0\nIFINDEX=9"),
                ("type", "1"),
                ("mtu", "1500"),
                ("address", "7e:11:22:33:44:55"),
                ("addr_assign_type", "1"),
            ],
        );
        let facts = fx.read("lnk0");
        assert_eq!((facts.bus, facts.driver, facts.usb), (Bus::Virtual, None, None));
        assert_eq!(facts.addr_assign, Some(AddrAssign::Random));
        assert!(!AddrAssign::Random.is_stable() && AddrAssign::Set.is_stable());
        assert_eq!(facts.ifindex, Some(9), "from uevent when there is no ifindex file");
    }

    #[test]
    fn a_missing_interface_or_a_bad_name_is_an_error() {
        let fx = Fixture::new("missing");
        let err = LinkFacts::read(&fx.root, "wwan9").unwrap_err();
        assert!(matches!(err, FactsError::NoInterface { .. }), "{err}");
        assert!(err.to_string().contains("wwan9"), "{err}");
        for bad in ["", ".", "..", "../../etc", "a/b", "wwan0 ", "sixteen-chars-xx"] {
            assert!(matches!(LinkFacts::read(&fx.root, bad), Err(FactsError::InvalidName(_))), "{bad:?}");
        }
    }

    #[test]
    fn loopback_on_the_real_sysfs_is_virtual() {
        let facts = LinkFacts::read(Path::new("/sys"), "lo").unwrap();
        assert_eq!(facts.bus, Bus::Virtual);
        assert_eq!(facts.ifindex, Some(1));
        assert_eq!(facts.framing, Some(Framing::Other(772)), "ARPHRD_LOOPBACK");
        assert_eq!((facts.mac, facts.speed_mbps, facts.usb), (None, None, None));
        assert!(facts.mtu.is_some());
    }
}
