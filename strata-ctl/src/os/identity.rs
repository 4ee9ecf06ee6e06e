//! A link's identity that survives re-enumeration.
//!
//! Interface names are handed out in order of appearance: a modem that
//! resets on the USB bus (heat, firmware crash, a loose connector) comes
//! back as `wwan1` if `wwan0` was not freed yet, and another modem may take
//! `wwan0`. The controller must recognise the modem, not the name, to keep
//! its history, its lifecycle and its Prometheus labels. What survives:
//!
//! * the **USB device**: its port path (`1-1.2`, stable while it stays in
//!   the same port), vendor and product id (a different model plugged into
//!   that port is a different link), and its serial where it reports one
//!   (most modems do; it also tells two units of the same model apart, and
//!   follows a modem into another port);
//! * a **MAC address**, only if it is stable: permanent or set by the
//!   administrator. A random one is new at every enumeration. It is not
//!   consulted when both sides are USB devices: usbnet gives devices that
//!   have no address of their own one made up when the driver loads, so two
//!   such modems can show the same "permanent" MAC.
//! * otherwise only the **name**, which is all a veth or tun has.
//!
//! Pure code over [`LinkFacts`].

use super::sysfs::LinkFacts;

/// The USB part of an identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UsbKey {
    /// Port path, e.g. `1-1.2`.
    pub port_path: String,
    /// `idVendor`.
    pub vendor_id: u16,
    /// `idProduct`.
    pub product_id: u16,
    /// `serial`, if the device has one.
    pub serial: Option<String>,
}

/// What identifies a link across re-enumerations.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LinkIdentity {
    /// Interface name when the identity was taken.
    pub ifname: String,
    /// The USB device, when the link is on USB.
    pub usb: Option<UsbKey>,
    /// The MAC address, only when it is stable.
    pub mac: Option<String>,
}

/// How strongly two identities are the same link; a stronger match
/// compares greater.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Match {
    /// Not the same link, or nothing to tell.
    None,
    /// Only the names agree, and neither side has anything stronger (the
    /// case of virtual interfaces, whose name is all they have).
    Name,
    /// The same stable MAC address (neither side on USB, or only one).
    Mac,
    /// The same USB device: same serial and vendor, or (without serials on
    /// both sides) same port path and vendor:product.
    Strong,
}

impl Match {
    /// Whether this counts as the same link.
    pub fn is_same(self) -> bool {
        self != Self::None
    }
}

impl LinkIdentity {
    /// The identity sysfs facts support.
    pub fn from_facts(facts: &LinkFacts) -> Self {
        let usb = facts.usb.as_ref().map(|u| UsbKey {
            port_path: u.port_path.clone(),
            vendor_id: u.vendor_id,
            product_id: u.product_id,
            serial: u.serial.clone(),
        });
        let stable = facts.addr_assign.is_some_and(|a| a.is_stable());
        Self { ifname: facts.ifname.clone(), usb, mac: facts.mac.clone().filter(|_| stable) }
    }

    /// An identity made of the name alone, for when sysfs could not be read.
    pub fn from_name(ifname: &str) -> Self {
        Self { ifname: ifname.to_string(), usb: None, mac: None }
    }

    /// How strongly `candidate` (a link that just appeared) is this link.
    pub fn matches(&self, candidate: &Self) -> Match {
        if let (Some(a), Some(b)) = (&self.usb, &candidate.usb) {
            return usb_match(a, b);
        }
        if let (Some(a), Some(b)) = (&self.mac, &candidate.mac) {
            return if a == b { Match::Mac } else { Match::None };
        }
        let nothing_stronger = |id: &Self| id.usb.is_none() && id.mac.is_none();
        if self.ifname == candidate.ifname && nothing_stronger(self) && nothing_stronger(candidate) {
            return Match::Name;
        }
        Match::None
    }

    /// A short stable key for labels and logs: `usb:<serial>`,
    /// `usb:<port>:<vid>:<pid>`, `mac:<mac>` or `name:<ifname>`.
    pub fn key(&self) -> String {
        match (&self.usb, &self.mac) {
            (Some(UsbKey { serial: Some(serial), vendor_id, .. }), _) => {
                format!("usb:{vendor_id:04x}:{serial}")
            }
            (Some(u), _) => format!("usb:{}:{:04x}:{:04x}", u.port_path, u.vendor_id, u.product_id),
            (None, Some(mac)) => format!("mac:{mac}"),
            (None, None) => format!("name:{}", self.ifname),
        }
    }
}

fn usb_match(a: &UsbKey, b: &UsbKey) -> Match {
    match (&a.serial, &b.serial) {
        // A serial names the unit: it follows the modem to another port,
        // and tells apart two of the same model swapped in one port. The
        // product id is left out: some modems change it when switched to
        // another USB composition (QMI, MBIM, ECM).
        (Some(sa), Some(sb)) => {
            if sa == sb && a.vendor_id == b.vendor_id {
                Match::Strong
            } else {
                Match::None
            }
        }
        _ => {
            if a.port_path == b.port_path && a.vendor_id == b.vendor_id && a.product_id == b.product_id {
                Match::Strong
            } else {
                Match::None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os::sysfs::{AddrAssign, Bus, Framing, UsbDevice};

    fn modem(ifname: &str, port: &str, vid: u16, pid: u16, serial: Option<&str>) -> LinkFacts {
        LinkFacts {
            ifname: ifname.into(),
            ifindex: Some(5),
            bus: Bus::Usb,
            driver: Some("qmi_wwan".into()),
            devtype: Some("wwan".into()),
            wireless: false,
            framing: Some(Framing::RawIp),
            mtu: Some(1500),
            speed_mbps: None,
            mac: None,
            addr_assign: Some(AddrAssign::Permanent),
            usb: Some(UsbDevice {
                port_path: port.into(),
                vendor_id: vid,
                product_id: pid,
                serial: serial.map(Into::into),
                manufacturer: None,
                product: None,
            }),
        }
    }

    fn nic(ifname: &str, mac: &str, assign: AddrAssign) -> LinkFacts {
        LinkFacts {
            ifname: ifname.into(),
            ifindex: Some(3),
            bus: Bus::Virtual,
            driver: None,
            devtype: None,
            wireless: false,
            framing: Some(Framing::Ethernet),
            mtu: Some(1500),
            speed_mbps: None,
            mac: Some(mac.into()),
            addr_assign: Some(assign),
            usb: None,
        }
    }

    fn id(facts: &LinkFacts) -> LinkIdentity {
        LinkIdentity::from_facts(facts)
    }

    #[test]
    fn a_modem_that_re_enumerates_under_another_name_in_the_same_port_matches() {
        let before = id(&modem("wwan0", "1-1.2", 0x2c7c, 0x0125, None));
        let after = id(&modem("wwan1", "1-1.2", 0x2c7c, 0x0125, None));
        assert_eq!(before.matches(&after), Match::Strong);
        assert_eq!(before.key(), after.key());
        assert_eq!(before.key(), "usb:1-1.2:2c7c:0125");
    }

    #[test]
    fn another_model_in_the_same_port_does_not_match_on_the_path_alone() {
        let before = id(&modem("wwan0", "1-1.2", 0x2c7c, 0x0125, None));
        let sierra = id(&modem("wwan0", "1-1.2", 0x1199, 0x9071, None));
        assert_eq!(before.matches(&sierra), Match::None);
        let other_pid = id(&modem("wwan0", "1-1.2", 0x2c7c, 0x0306, None));
        assert_eq!(before.matches(&other_pid), Match::None);
    }

    #[test]
    fn a_serial_follows_the_modem_to_another_port_and_tells_units_apart() {
        let before = id(&modem("wwan0", "1-1.2", 0x2c7c, 0x0125, Some("861234")));
        let moved = id(&modem("wwan3", "1-1.4", 0x2c7c, 0x0125, Some("861234")));
        assert_eq!(before.matches(&moved), Match::Strong);
        assert_eq!(before.key(), moved.key());
        let twin = id(&modem("wwan0", "1-1.2", 0x2c7c, 0x0125, Some("869999")));
        assert_eq!(before.matches(&twin), Match::None, "same model, same port, another unit");
        let other_vendor = id(&modem("wwan0", "1-1.2", 0x1199, 0x0125, Some("861234")));
        assert_eq!(before.matches(&other_vendor), Match::None);
        // A serial on one side only: fall back to port and ids.
        let no_serial = id(&modem("wwan1", "1-1.2", 0x2c7c, 0x0125, None));
        assert_eq!(before.matches(&no_serial), Match::Strong);
    }

    #[test]
    fn usb_identities_decide_alone_even_if_macs_agree() {
        let mut a = modem("usb0", "1-1.2", 0x12d1, 0x14dc, None);
        let mut b = modem("usb1", "1-1.3", 0x12d1, 0x14dc, None);
        a.mac = Some("02:11:22:33:44:55".into());
        b.mac = a.mac.clone();
        assert_eq!(id(&a).matches(&id(&b)), Match::None);
    }

    #[test]
    fn a_stable_mac_matches_and_a_random_one_never_does() {
        let perm = id(&nic("eth0", "a8:a1:59:00:11:22", AddrAssign::Permanent));
        let renamed = id(&nic("enp2s0", "a8:a1:59:00:11:22", AddrAssign::Permanent));
        assert_eq!(perm.matches(&renamed), Match::Mac);
        let set = id(&nic("eth1", "02:00:00:00:00:01", AddrAssign::Set));
        assert_eq!(set.matches(&id(&nic("eth9", "02:00:00:00:00:01", AddrAssign::Set))), Match::Mac);
        assert_eq!(perm.matches(&set), Match::None);

        for assign in [AddrAssign::Random, AddrAssign::Stolen] {
            let a = id(&nic("lnk0", "7e:11:22:33:44:55", assign));
            let b = id(&nic("lnk1", "7e:11:22:33:44:55", assign));
            assert_eq!(a.mac, None);
            assert_eq!(a.matches(&b), Match::None, "{assign:?}");
        }
        // A stable MAC on one side only decides nothing.
        let random = id(&nic("eth0", "a8:a1:59:00:11:22", AddrAssign::Random));
        assert_eq!(perm.matches(&random), Match::None);
    }

    #[test]
    fn names_match_only_when_nothing_stronger_exists() {
        let veth = id(&nic("lnk0", "7e:11:22:33:44:55", AddrAssign::Random));
        let again = id(&nic("lnk0", "7e:66:77:88:99:aa", AddrAssign::Random));
        assert_eq!(veth.matches(&again), Match::Name);
        assert_eq!(veth.matches(&LinkIdentity::from_name("lnk0")), Match::Name);
        assert_eq!(veth.key(), "name:lnk0");
        // A new modem that took the old modem's name is not the old modem.
        let old = id(&modem("wwan0", "1-1.2", 0x2c7c, 0x0125, None));
        assert_eq!(old.matches(&LinkIdentity::from_name("wwan0")), Match::None);
        assert!(Match::Strong > Match::Mac && Match::Mac > Match::Name && !Match::None.is_same());
    }
}
