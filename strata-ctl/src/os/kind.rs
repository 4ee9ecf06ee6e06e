//! What kind of link this is: cellular, Wi-Fi, wired or virtual, with a
//! confidence the operator can check.
//!
//! Two sources of evidence meet here. What Linux knows about the device
//! ([`LinkFacts`]: driver, device type, framing, bus, speed) is strong but
//! can be missing (facts unreadable, a tier without OS advisors) or
//! misleading (a USB CDC function is a modem in one car and a dock in
//! another). What in-band measurement sees ([`Behaviour`]) is always there
//! once the link has carried probes, but overlaps between kinds: a loaded
//! wired link can look like a cellular one. ModemManager's access
//! technology, when the caller has matched a modem to this interface, is
//! near-certain and names the technology.
//!
//! Every rule that fires adds a [reason](KindGuess::reasons) that supports
//! one kind with a fixed weight, written in the reason itself ("… cellular
//! +0.90"). The support of a kind is the noisy-OR of its weights, 1 − ∏(1 −
//! w): independent clues, each able to convince alone with probability w.
//! The winner is the best-supported kind, and its confidence is its support
//! discounted by the best rival's: support(winner) × (1 − support(runner-up)).
//! So a `qmi_wwan` modem with `DEVTYPE=wwan` in raw-IP mode gives
//! 1 − 0.1 × 0.1 × 0.4 = 0.996; the same modem whose round trip looks like a
//! LAN's gives 0.996 × (1 − 0.4) ≈ 0.6. No rule fired: Unknown,
//! confidence 0.
//!
//! Pure code.

use crate::{
    control::controller::Behaviour,
    os::sysfs::{Bus, Framing, LinkFacts},
};

/// What a link is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkKind {
    /// A cellular modem (or a phone tethering one).
    Cellular {
        /// Whether the modem is on USB (rather than PCIe/M.2 or unknown).
        over_usb: bool,
        /// Access technology as ModemManager names it (`lte`, `5gnr`, …).
        tech: Option<String>,
    },
    /// Wi-Fi.
    Wifi,
    /// Ethernet or another wired NIC.
    Wired,
    /// No hardware behind it: veth, tun, a bridge (the lab's links).
    Virtual,
    /// Nothing to tell.
    Unknown,
}

impl LinkKind {
    /// The kind's name, without detail: `cellular`, `wifi`, `wired`,
    /// `virtual` or `unknown` (a metrics label).
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Cellular { .. } => "cellular",
            Self::Wifi => "wifi",
            Self::Wired => "wired",
            Self::Virtual => "virtual",
            Self::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for LinkKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cellular { over_usb, tech } => {
                f.write_str("cellular")?;
                if let Some(t) = tech {
                    write!(f, "/{t}")?;
                }
                if *over_usb {
                    f.write_str(" over USB")?;
                }
                Ok(())
            }
            other => f.write_str(other.name()),
        }
    }
}

/// An inferred kind with its confidence and the reasons behind it.
#[derive(Clone, Debug, PartialEq)]
pub struct KindGuess {
    /// The best-supported kind.
    pub kind: LinkKind,
    /// 0..1, computed from the weights written in `reasons` (module doc).
    pub confidence: f64,
    /// Every rule that fired, for and against, in evaluation order.
    pub reasons: Vec<&'static str>,
}

/// The kinds evidence can support (Unknown is the absence of evidence).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Cellular,
    Wifi,
    Wired,
    Virtual,
}

/// One rule's conclusion: a kind, a weight, and the sentence that says so.
#[derive(Clone, Copy, Debug)]
struct Rule {
    class: Class,
    weight: f64,
    reason: &'static str,
}

const CELL_DRIVER: Rule = Rule {
    class: Class::Cellular,
    weight: 0.9,
    reason: "driver is a cellular modem's (qmi_wwan, cdc_mbim, mhi_net, …): cellular +0.90",
};
const WWAN_DEVTYPE: Rule =
    Rule { class: Class::Cellular, weight: 0.9, reason: "device type wwan: cellular +0.90" };
const RAW_IP: Rule = Rule {
    class: Class::Cellular,
    weight: 0.6,
    reason: "raw-IP framing on a hardware device, as modems use: cellular +0.60",
};
const USB_CDC: Rule = Rule {
    class: Class::Cellular,
    weight: 0.4,
    reason: "USB CDC/NCM/RNDIS network function (modems, tethered phones, some docks): cellular +0.40",
};
const USB_PLAIN: Rule = Rule {
    class: Class::Cellular,
    weight: 0.2,
    reason: "USB network device of no known class (most in a car are modems): cellular +0.20",
};
const MODEM_TECH: Rule = Rule {
    class: Class::Cellular,
    weight: 0.9,
    reason: "ModemManager reports an access technology: cellular +0.90",
};
const CELL_BEHAVIOUR: Rule = Rule {
    class: Class::Cellular,
    weight: 0.35,
    reason: "base round trip >= 20 ms with jitter >= 2 ms, like a radio link: cellular +0.35",
};
const WLAN: Rule =
    Rule { class: Class::Wifi, weight: 0.9, reason: "device type wlan or wireless extensions: wifi +0.90" };
const WIFI_DRIVER: Rule = Rule {
    class: Class::Wifi,
    weight: 0.7,
    reason: "driver is a Wi-Fi chip's (iwlwifi, ath*, mt7*, …): wifi +0.70",
};
const USB_ETHERNET: Rule = Rule {
    class: Class::Wired,
    weight: 0.8,
    reason: "driver is a USB Ethernet adapter's (r8152, ax88179_178a, asix, …): wired +0.80",
};
const PCI_SPEED: Rule = Rule {
    class: Class::Wired,
    weight: 0.7,
    reason: "PCI network device reporting a link speed: wired +0.70",
};
const PCI_PLAIN: Rule =
    Rule { class: Class::Wired, weight: 0.3, reason: "PCI network device, no link speed known: wired +0.30" };
const WIRED_BEHAVIOUR: Rule = Rule {
    class: Class::Wired,
    weight: 0.4,
    reason: "base round trip < 5 ms with jitter < 1 ms, like a LAN: wired +0.40",
};
const NO_DEVICE: Rule =
    Rule { class: Class::Virtual, weight: 0.9, reason: "no device behind the interface: virtual +0.90" };

/// Drivers that only ever drive cellular modems.
const MODEM_DRIVERS: [&str; 7] =
    ["qmi_wwan", "cdc_mbim", "sierra_net", "huawei_cdc_ncm", "mhi_net", "ipa", "rmnet"];
/// USB class drivers modems and tethered phones use, but not only they.
const USB_CDC_DRIVERS: [&str; 5] = ["cdc_ether", "cdc_ncm", "rndis_host", "cdc_eem", "ipheth"];
/// USB Ethernet adapter chips.
const USB_ETHERNET_DRIVERS: [&str; 6] =
    ["r8152", "ax88179_178a", "asix", "smsc95xx", "lan78xx", "cdc_subset"];
/// Wi-Fi driver name prefixes.
const WIFI_DRIVER_PREFIXES: [&str; 8] =
    ["iwlwifi", "ath", "mt7", "mt76", "brcmfmac", "rtw", "rtl8", "mwifiex"];

/// Round trip at or above which a link looks like radio, ms.
const CELL_MIN_RTT_MS: f64 = 20.0;
/// Jitter at or above which a link looks like radio, ms.
const CELL_MIN_JITTER_MS: f64 = 2.0;
/// Round trip below which a link looks like a LAN, ms.
const WIRED_MAX_RTT_MS: f64 = 5.0;
/// Jitter below which a link looks like a LAN, ms.
const WIRED_MAX_JITTER_MS: f64 = 1.0;

/// Infers the kind of a link from sysfs facts (if read), in-band behaviour,
/// and ModemManager's access technology (if a modem is matched to it).
///
/// Loss, burstiness, reordering and capacity are carried in [`Behaviour`]
/// but not yet rules: none of them separates the kinds on its own (Wi-Fi
/// and cellular both lose in bursts) and the lab has no data to set a
/// threshold on.
pub fn infer(facts: Option<&LinkFacts>, behaviour: &Behaviour, modem_tech: Option<&str>) -> KindGuess {
    let mut fired: Vec<Rule> = Vec::new();
    if let Some(f) = facts {
        fired.extend(fact_rules(f));
    }
    if modem_tech.is_some() {
        fired.push(MODEM_TECH);
    }
    if let (Some(rtt), Some(jitter)) = (behaviour.base_rtt_ms, behaviour.jitter_ms) {
        if rtt >= CELL_MIN_RTT_MS && jitter >= CELL_MIN_JITTER_MS {
            fired.push(CELL_BEHAVIOUR);
        } else if rtt < WIRED_MAX_RTT_MS && jitter < WIRED_MAX_JITTER_MS {
            fired.push(WIRED_BEHAVIOUR);
        }
    }

    let support = |class: Class| {
        1.0 - fired.iter().filter(|r| r.class == class).map(|r| 1.0 - r.weight).product::<f64>()
    };
    // Ties go to the earlier kind in this order.
    let mut ranked: Vec<(Class, f64)> =
        [Class::Cellular, Class::Wifi, Class::Wired, Class::Virtual].map(|c| (c, support(c))).into();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    let reasons = fired.iter().map(|r| r.reason).collect();
    let (best, best_support) = ranked[0];
    if best_support <= 0.0 {
        return KindGuess { kind: LinkKind::Unknown, confidence: 0.0, reasons };
    }
    let kind = match best {
        Class::Cellular => LinkKind::Cellular {
            over_usb: facts.is_some_and(|f| f.bus == Bus::Usb),
            tech: modem_tech.map(str::to_string),
        },
        Class::Wifi => LinkKind::Wifi,
        Class::Wired => LinkKind::Wired,
        Class::Virtual => LinkKind::Virtual,
    };
    KindGuess { kind, confidence: best_support * (1.0 - ranked[1].1), reasons }
}

/// The rules sysfs facts fire.
fn fact_rules(f: &LinkFacts) -> Vec<Rule> {
    let mut fired = Vec::new();
    let driver = f.driver.as_deref().unwrap_or("");
    let devtype = f.devtype.as_deref();
    let wireless = f.wireless || devtype == Some("wlan");
    let mut known_driver = true;
    if MODEM_DRIVERS.contains(&driver) {
        fired.push(CELL_DRIVER);
    } else if USB_CDC_DRIVERS.contains(&driver) {
        fired.push(USB_CDC);
    } else if USB_ETHERNET_DRIVERS.contains(&driver) {
        fired.push(USB_ETHERNET);
    } else if WIFI_DRIVER_PREFIXES.iter().any(|p| driver.starts_with(p)) {
        fired.push(WIFI_DRIVER);
    } else {
        known_driver = false;
    }
    if devtype == Some("wwan") {
        fired.push(WWAN_DEVTYPE);
    }
    if wireless {
        fired.push(WLAN);
    }
    match &f.bus {
        // tun and WireGuard are raw IP too: framing says "modem" only with
        // hardware behind it.
        Bus::Virtual if devtype != Some("wwan") && !wireless => fired.push(NO_DEVICE),
        Bus::Usb if !known_driver && devtype.is_none() && !wireless => fired.push(USB_PLAIN),
        Bus::Pci if !wireless && devtype != Some("wwan") && !MODEM_DRIVERS.contains(&driver) => {
            fired.push(if f.speed_mbps.is_some() { PCI_SPEED } else { PCI_PLAIN });
        }
        _ => {}
    }
    if f.bus != Bus::Virtual && f.framing == Some(Framing::RawIp) {
        fired.push(RAW_IP);
    }
    fired
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os::sysfs::{AddrAssign, UsbDevice};

    fn facts(bus: Bus, driver: Option<&str>, devtype: Option<&str>, framing: Framing) -> LinkFacts {
        let usb = (bus == Bus::Usb).then(|| UsbDevice {
            port_path: "1-1.2".into(),
            vendor_id: 0x2c7c,
            product_id: 0x0125,
            serial: None,
            manufacturer: None,
            product: None,
        });
        LinkFacts {
            ifname: "x0".into(),
            ifindex: Some(4),
            bus,
            driver: driver.map(Into::into),
            devtype: devtype.map(Into::into),
            wireless: devtype == Some("wlan"),
            framing: Some(framing),
            mtu: Some(1500),
            speed_mbps: None,
            mac: None,
            addr_assign: Some(AddrAssign::Permanent),
            usb,
        }
    }

    fn radio() -> Behaviour {
        Behaviour { base_rtt_ms: Some(38.0), jitter_ms: Some(9.0), ..Behaviour::default() }
    }

    fn lan() -> Behaviour {
        Behaviour { base_rtt_ms: Some(0.4), jitter_ms: Some(0.1), ..Behaviour::default() }
    }

    fn cellular(over_usb: bool, tech: Option<&str>) -> LinkKind {
        LinkKind::Cellular { over_usb, tech: tech.map(Into::into) }
    }

    /// Name, facts, behaviour, modem technology, expected kind, and the
    /// range the confidence must fall in.
    type Case<'a> =
        (&'static str, Option<&'a LinkFacts>, Behaviour, Option<&'static str>, LinkKind, (f64, f64));

    #[test]
    fn table_of_links() {
        let qmi = facts(Bus::Usb, Some("qmi_wwan"), Some("wwan"), Framing::RawIp);
        let mbim = facts(Bus::Usb, Some("cdc_mbim"), None, Framing::RawIp);
        let cdc = facts(Bus::Usb, Some("cdc_ether"), None, Framing::Ethernet);
        let r8152 = facts(Bus::Usb, Some("r8152"), None, Framing::Ethernet);
        let mut igc = facts(Bus::Pci, Some("igc"), None, Framing::Ethernet);
        igc.speed_mbps = Some(2500);
        let virtio = facts(Bus::Pci, Some("virtio_net"), None, Framing::Ethernet);
        let iwl = facts(Bus::Pci, Some("iwlwifi"), Some("wlan"), Framing::Ethernet);
        let mhi = facts(Bus::Pci, Some("mhi_net"), None, Framing::RawIp);
        let veth = facts(Bus::Virtual, None, None, Framing::Ethernet);
        let tun = facts(Bus::Virtual, None, None, Framing::RawIp);
        let odd_usb = facts(Bus::Usb, Some("some_new_driver"), None, Framing::Ethernet);

        let cases: Vec<Case<'_>> = vec![
            ("qmi modem", Some(&qmi), Behaviour::default(), None, cellular(true, None), (0.99, 1.0)),
            (
                "qmi modem + MM tech",
                Some(&qmi),
                radio(),
                Some("lte"),
                cellular(true, Some("lte")),
                (0.999, 1.0),
            ),
            ("mbim modem", Some(&mbim), Behaviour::default(), None, cellular(true, None), (0.95, 0.97)),
            ("qmi modem, LAN-like rtt", Some(&qmi), lan(), None, cellular(true, None), (0.59, 0.61)),
            (
                "cdc_ether alone is a weak modem",
                Some(&cdc),
                Behaviour::default(),
                None,
                cellular(true, None),
                (0.39, 0.41),
            ),
            ("cdc_ether + radio rtt", Some(&cdc), radio(), None, cellular(true, None), (0.60, 0.62)),
            (
                "cdc_ether + MM tech",
                Some(&cdc),
                Behaviour::default(),
                Some("5gnr"),
                cellular(true, Some("5gnr")),
                (0.93, 0.95),
            ),
            ("usb ethernet adapter", Some(&r8152), lan(), None, LinkKind::Wired, (0.87, 0.89)),
            (
                "unknown usb device",
                Some(&odd_usb),
                Behaviour::default(),
                None,
                cellular(true, None),
                (0.19, 0.21),
            ),
            ("pci nic with speed", Some(&igc), lan(), None, LinkKind::Wired, (0.81, 0.83)),
            ("virtio nic", Some(&virtio), Behaviour::default(), None, LinkKind::Wired, (0.29, 0.31)),
            ("pci wifi", Some(&iwl), Behaviour::default(), None, LinkKind::Wifi, (0.96, 0.98)),
            ("pcie modem (mhi)", Some(&mhi), radio(), None, cellular(false, None), (0.97, 0.98)),
            ("veth", Some(&veth), Behaviour::default(), None, LinkKind::Virtual, (0.89, 0.91)),
            ("veth emulating a carrier", Some(&veth), radio(), None, LinkKind::Virtual, (0.58, 0.59)),
            (
                "tun is virtual though raw IP",
                Some(&tun),
                Behaviour::default(),
                None,
                LinkKind::Virtual,
                (0.89, 0.91),
            ),
            ("no facts, radio behaviour", None, radio(), None, cellular(false, None), (0.34, 0.36)),
            ("no facts, LAN behaviour", None, lan(), None, LinkKind::Wired, (0.39, 0.41)),
            (
                "no facts, MM tech",
                None,
                Behaviour::default(),
                Some("lte"),
                cellular(false, Some("lte")),
                (0.89, 0.91),
            ),
            ("nothing at all", None, Behaviour::default(), None, LinkKind::Unknown, (0.0, 0.0)),
            (
                "in-between behaviour fires nothing",
                None,
                Behaviour { base_rtt_ms: Some(10.0), jitter_ms: Some(1.5), ..Behaviour::default() },
                None,
                LinkKind::Unknown,
                (0.0, 0.0),
            ),
        ];
        for (name, f, behaviour, tech, kind, (lo, hi)) in cases {
            let guess = infer(f, &behaviour, tech);
            assert_eq!(guess.kind, kind, "{name}: {guess:?}");
            assert!(
                (lo..=hi).contains(&guess.confidence),
                "{name}: confidence {} not in {lo}..={hi}: {:?}",
                guess.confidence,
                guess.reasons
            );
        }
    }

    #[test]
    fn confidence_is_recomputable_from_the_reasons() {
        let qmi = facts(Bus::Usb, Some("qmi_wwan"), Some("wwan"), Framing::RawIp);
        let guess = infer(Some(&qmi), &lan(), None);
        // Each reason ends in "<kind> +<weight>"; recompute from the text.
        let mut support = std::collections::BTreeMap::<&str, f64>::new();
        for reason in &guess.reasons {
            let (_, tail) = reason.rsplit_once(": ").unwrap();
            let (kind, weight) = tail.split_once(" +").unwrap();
            let w: f64 = weight.parse().unwrap();
            let s = support.entry(kind).or_insert(0.0);
            *s = 1.0 - (1.0 - *s) * (1.0 - w);
        }
        let mut values: Vec<f64> = support.values().copied().collect();
        values.sort_by(|a, b| b.total_cmp(a));
        let expected = values[0] * (1.0 - values.get(1).copied().unwrap_or(0.0));
        assert!((guess.confidence - expected).abs() < 1e-12, "{guess:?} vs {expected}");
        assert_eq!(guess.reasons.len(), 4, "{:?}", guess.reasons);
    }

    #[test]
    fn every_reason_states_its_own_weight_and_kind() {
        let rules = [
            CELL_DRIVER,
            WWAN_DEVTYPE,
            RAW_IP,
            USB_CDC,
            USB_PLAIN,
            MODEM_TECH,
            CELL_BEHAVIOUR,
            WLAN,
            WIFI_DRIVER,
            USB_ETHERNET,
            PCI_SPEED,
            PCI_PLAIN,
            WIRED_BEHAVIOUR,
            NO_DEVICE,
        ];
        for rule in rules {
            let kind = match rule.class {
                Class::Cellular => "cellular",
                Class::Wifi => "wifi",
                Class::Wired => "wired",
                Class::Virtual => "virtual",
            };
            let tail = format!(": {kind} +{:.2}", rule.weight);
            assert!(rule.reason.ends_with(&tail), "{:?} should end with {tail:?}", rule.reason);
            assert!(rule.weight > 0.0 && rule.weight < 1.0);
        }
    }
}
