//! `[[classes]]`: which inner packets belong to which delivery class, beyond
//! the DSCP defaults.
//!
//! The sender classifies every packet in the kernel (`strata_common::class`):
//! the first rule here that matches decides; a packet no rule matches is
//! classed by its DSCP — EF (46) and CS5–CS7 (40, 48, 56) critical, AF41–43
//! (34, 36, 38) video, everything else best effort.
//!
//! ```toml
//! [[classes]]              # MAVLink telemetry, whatever its DSCP
//! class = "critical"       # critical | video | best_effort
//! protocol = "udp"         # udp | tcp | a protocol number 1-255
//! port = 14550             # destination port, or a range "5000-5099" (udp or tcp only)
//!
//! [[classes]]
//! class = "video"
//! dscp = 32                # 0-63: CS4 (real-time interactive) counted as video
//! ```
//!
//! A rule names at least one of `dscp`, `protocol`, `port`; a packet matches
//! when it matches each one named. Ports are read from TCP and UDP headers
//! only: an IPv4 fragment after the first, or an IPv6 packet with extension
//! headers in front of its transport header, has no port (and IPv6's
//! protocol is then the first extension's number).
//!
//! The kernel evaluates at most [`MAX_CLASS_RULES`] rules per packet, in
//! order. DSCP-only rules after the last rule naming a protocol or port cost
//! nothing per packet: they are folded into the per-DSCP table (the first of
//! them for a DSCP wins, as in order). Rules up to the last protocol or port
//! rule count against the limit. A reload rewrites the table.

use serde::Deserialize;
use strata_common::{
    class::{ClassRule, ClassTable, MAX_CLASS_RULES},
    packet::{IPPROTO_TCP, IPPROTO_UDP},
    wire::TrafficClass,
};

/// A number or a string, as TOML gives a field that may be either; checked
/// (with a message naming the field) in [`validate`].
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum NumberOrName {
    /// `port = 14550`, `protocol = 17`.
    Number(i64),
    /// `port = "5000-5099"`, `protocol = "udp"`.
    Name(String),
}

/// One `[[classes]]` entry.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClassSection {
    /// `critical`, `video` or `best_effort`.
    pub class: String,
    /// The inner packet's DSCP, 0-63.
    #[serde(default)]
    pub dscp: Option<i64>,
    /// `udp`, `tcp` or a protocol number.
    #[serde(default)]
    pub protocol: Option<NumberOrName>,
    /// A destination port or `"LOW-HIGH"`.
    #[serde(default)]
    pub port: Option<NumberOrName>,
}

/// The class named `name` in configuration.
fn class_named(name: &str) -> Option<TrafficClass> {
    TrafficClass::ALL.into_iter().find(|c| c.name() == name)
}

/// Checks one entry and returns its kernel rule; `Err((field, problem))`.
fn rule(i: usize, s: &ClassSection) -> Result<ClassRule, (String, String)> {
    let field = |f: &str| format!("classes[{i}].{f}");
    let class = class_named(&s.class).ok_or_else(|| {
        (field("class"), format!("{:?} is not a class: critical, video or best_effort", s.class))
    })?;
    let mut rule = ClassRule::any(class);
    if s.dscp.is_none() && s.protocol.is_none() && s.port.is_none() {
        return Err((
            format!("classes[{i}]"),
            "names none of dscp, protocol, port: it would match every packet".into(),
        ));
    }
    if let Some(dscp) = s.dscp {
        rule.dscp = u8::try_from(dscp)
            .ok()
            .filter(|d| *d < 64)
            .ok_or_else(|| (field("dscp"), format!("{dscp} is outside 0..=63")))?;
    }
    if let Some(p) = &s.protocol {
        rule.protocol = match p {
            NumberOrName::Name(n) if n == "udp" => IPPROTO_UDP,
            NumberOrName::Name(n) if n == "tcp" => IPPROTO_TCP,
            NumberOrName::Name(n) => {
                return Err((
                    field("protocol"),
                    format!("{n:?}: expected \"udp\", \"tcp\" or a number 1-255"),
                ));
            }
            NumberOrName::Number(n) => u8::try_from(*n)
                .ok()
                .filter(|n| *n != 0)
                .ok_or_else(|| (field("protocol"), format!("{n} is outside 1..=255")))?,
        };
    }
    if let Some(port) = &s.port {
        if rule.protocol != IPPROTO_UDP && rule.protocol != IPPROTO_TCP {
            return Err((
                field("port"),
                "needs protocol = \"udp\" or \"tcp\" (only their ports are read)".into(),
            ));
        }
        let (lo, hi) = match port {
            NumberOrName::Number(n) => (*n, *n),
            NumberOrName::Name(range) => {
                let parsed = range.split_once('-').and_then(|(lo, hi)| {
                    Some((lo.trim().parse::<i64>().ok()?, hi.trim().parse::<i64>().ok()?))
                });
                parsed.ok_or_else(|| {
                    (field("port"), format!("{range:?}: expected a port or a range \"LOW-HIGH\""))
                })?
            }
        };
        for p in [lo, hi] {
            if !(1..=65_535).contains(&p) {
                return Err((field("port"), format!("{p} is outside 1..=65535")));
            }
        }
        if lo > hi {
            return Err((field("port"), format!("the range {lo}-{hi} is empty")));
        }
        (rule.port_lo, rule.port_hi) = (lo as u32, hi as u32);
    }
    Ok(rule)
}

/// Whether the kernel must see `rule` per packet: it names a protocol or port.
fn needs_transport(rule: &ClassRule) -> bool {
    let any_port = ClassRule::any(TrafficClass::BestEffort);
    rule.protocol != any_port.protocol || rule.port_lo != any_port.port_lo || rule.port_hi != any_port.port_hi
}

/// Checks every entry; `Err((field, problem))` names the first problem.
pub fn validate(classes: &[ClassSection]) -> Result<(), (String, String)> {
    table(classes).map(|_| ())
}

/// The kernel's table for `classes` (the defaults when empty).
pub fn table(classes: &[ClassSection]) -> Result<ClassTable, (String, String)> {
    let rules = classes.iter().enumerate().map(|(i, s)| rule(i, s)).collect::<Result<Vec<_>, _>>()?;
    let evaluated = rules.iter().rposition(needs_transport).map_or(0, |last| last + 1);
    if evaluated > MAX_CLASS_RULES {
        return Err((
            "classes".into(),
            format!(
                "{evaluated} rules name a protocol or port or come before one that does; the kernel \
                 evaluates at most {MAX_CLASS_RULES} per packet (DSCP-only rules after the last of them are free)"
            ),
        ));
    }
    let mut t = ClassTable::default();
    t.rules[..evaluated].copy_from_slice(&rules[..evaluated]);
    t.rule_count = evaluated as u32;
    // Trailing DSCP-only rules, the first for a DSCP winning: written last.
    for r in rules[evaluated..].iter().rev() {
        t.by_dscp[usize::from(r.dscp)] = r.class;
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use strata_common::class::NO_PORT;

    use super::*;

    fn parse(text: &str) -> Result<ClassTable, (String, String)> {
        #[derive(Deserialize)]
        struct File {
            classes: Vec<ClassSection>,
        }
        let f: File = toml::from_str(text).map_err(|e| ("toml".to_string(), e.to_string()))?;
        table(&f.classes)
    }

    fn error(text: &str) -> String {
        let (field, problem) = parse(text).expect_err("must be refused");
        format!("{field}: {problem}")
    }

    #[test]
    fn no_rules_are_the_dscp_defaults() {
        assert_eq!(table(&[]).unwrap(), ClassTable::default());
    }

    #[test]
    fn a_port_rule_is_evaluated_and_trailing_dscp_rules_are_folded() {
        let t = parse(
            r#"
            [[classes]]
            class = "critical"
            protocol = "udp"
            port = 14550
            [[classes]]
            class = "video"
            dscp = 32
            [[classes]]
            class = "best_effort"
            dscp = 32
            [[classes]]
            class = "best_effort"
            dscp = 46
            "#,
        )
        .unwrap();
        assert_eq!(t.rule_count, 1);
        assert_eq!(t.classify(0, IPPROTO_UDP, 14550), TrafficClass::Critical as u8);
        assert_eq!(t.classify(0, IPPROTO_TCP, 14550), TrafficClass::BestEffort as u8);
        assert_eq!(t.classify(32, IPPROTO_UDP, 80), TrafficClass::Video as u8, "first DSCP rule wins");
        assert_eq!(
            t.classify(46, IPPROTO_UDP, NO_PORT),
            TrafficClass::BestEffort as u8,
            "default overridden"
        );
        assert_eq!(t.classify(34, IPPROTO_UDP, 80), TrafficClass::Video as u8, "default kept");
    }

    #[test]
    fn a_dscp_rule_before_a_port_rule_keeps_its_place() {
        let t = parse(
            r#"
            [[classes]]
            class = "best_effort"
            dscp = 46
            [[classes]]
            class = "critical"
            protocol = "tcp"
            port = "5000-5099"
            "#,
        )
        .unwrap();
        assert_eq!(t.rule_count, 2);
        assert_eq!(t.classify(46, IPPROTO_TCP, 5050), TrafficClass::BestEffort as u8, "in order");
        assert_eq!(t.classify(0, IPPROTO_TCP, 5099), TrafficClass::Critical as u8);
        assert_eq!(t.classify(0, IPPROTO_TCP, 5100), TrafficClass::BestEffort as u8);
    }

    #[test]
    fn a_protocol_number_matches_without_a_port() {
        let t = parse("[[classes]]\nclass = \"critical\"\nprotocol = 47\n").unwrap();
        assert_eq!(t.classify(0, 47, NO_PORT), TrafficClass::Critical as u8);
    }

    #[test]
    fn mistakes_are_named() {
        for (text, expected) in [
            ("[[classes]]\nclass = \"gold\"\ndscp = 1\n", "classes[0].class: \"gold\" is not a class"),
            ("[[classes]]\nclass = \"video\"\n", "classes[0]: names none of dscp, protocol, port"),
            ("[[classes]]\nclass = \"video\"\ndscp = 64\n", "classes[0].dscp: 64 is outside 0..=63"),
            (
                "[[classes]]\nclass = \"video\"\nprotocol = \"sctp\"\n",
                "classes[0].protocol: \"sctp\": expected",
            ),
            ("[[classes]]\nclass = \"video\"\nprotocol = 0\n", "classes[0].protocol: 0 is outside 1..=255"),
            ("[[classes]]\nclass = \"video\"\nport = 5000\n", "classes[0].port: needs protocol"),
            (
                "[[classes]]\nclass = \"video\"\nprotocol = 47\nport = 5000\n",
                "classes[0].port: needs protocol",
            ),
            (
                "[[classes]]\nclass = \"video\"\nprotocol = \"udp\"\nport = 0\n",
                "classes[0].port: 0 is outside",
            ),
            (
                "[[classes]]\nclass = \"video\"\nprotocol = \"udp\"\nport = \"9-1\"\n",
                "classes[0].port: the range 9-1 is empty",
            ),
            (
                "[[classes]]\nclass = \"video\"\nprotocol = \"udp\"\nport = \"http\"\n",
                "classes[0].port: \"http\": expected a port or a range",
            ),
        ] {
            let got = error(text);
            assert!(got.starts_with(expected), "{text:?}: {got}");
        }
        let too_many: String = (0..=MAX_CLASS_RULES)
            .map(|p| format!("[[classes]]\nclass = \"critical\"\nprotocol = \"udp\"\nport = {}\n", p + 1))
            .collect();
        assert!(
            error(&too_many).starts_with("classes: 17 rules name a protocol or port"),
            "{}",
            error(&too_many)
        );
        let unknown = parse("[[classes]]\nclass = \"video\"\ndscp = 1\nports = 4\n").unwrap_err();
        assert!(unknown.1.contains("unknown field `ports`"), "{unknown:?}");
    }

    const EDGE: &str = "version = 1\nrole = \"edge\"\nsession = 7\n[tunnel]\naddress = \"10.200.0.1/30\"\n\
                        [peer]\naddress = \"198.19.0.2\"\n[[links]]\nid = 0\ninterface = \"lnk0\"\nweight = 1\n";

    #[test]
    fn the_configuration_file_carries_classes_and_names_the_file_in_errors() {
        use crate::config::{Config, change};
        let rule = "\n[[classes]]\nclass = \"critical\"\nprotocol = \"udp\"\nport = 14550\n";
        let with = Config::parse(&format!("{EDGE}{rule}"), "t.toml").unwrap();
        let table = with.class_table();
        assert_eq!(table.rule_count, 1);
        assert_eq!(table.classify(0, IPPROTO_UDP, 14550), TrafficClass::Critical as u8);
        let without = Config::parse(EDGE, "t.toml").unwrap();
        assert_eq!(without.class_table(), ClassTable::default());
        let changes = change::classify(&without, &with);
        assert_eq!(changes.reloadable, ["classes"], "{changes:?}");
        assert!(changes.reloadable_without_restart());

        let bad = Config::parse(&format!("{EDGE}{}", rule.replace("udp", "icmp")), "t.toml").unwrap_err();
        assert_eq!(
            bad.to_string(),
            "t.toml: classes[0].protocol: \"icmp\": expected \"udp\", \"tcp\" or a number 1-255"
        );
    }
}
