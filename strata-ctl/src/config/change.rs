//! Which differences between two configurations a running daemon can take
//! without a restart (`strata-ctl config check NEW --against OLD`, and a
//! reload: SIGHUP or `strata-ctl reload`).
//!
//! Every field is named: the old configuration is destructured
//! exhaustively (no `..`), so a field added to a section does not compile
//! until it is classified here — a new field cannot silently count as
//! reloadable, or be ignored by a reload.
//!
//! Reloadable today: the links' weights under static control (the
//! configured shares written to the schedule map) and the delivery classes
//! (the kernel's classification table). The control section's tunables are
//! read once by the controller at start-up, so they need a restart until
//! the controller takes new ones; they are listed one by one so the change
//! an operator made is named.

use super::{
    Config, ControlMode, ControlSection, HubSection, LinkSection, MetricsSection, PeerSection, StatusSection,
    TunnelSection,
};

/// The differences between a running configuration and a new one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Fields a running daemon applies on reload (e.g. `links[1].weight`).
    pub reloadable: Vec<String>,
    /// Fields that take effect only after a restart.
    pub restart: Vec<String>,
}

impl Changes {
    /// No difference at all.
    pub fn is_empty(&self) -> bool {
        self.reloadable.is_empty() && self.restart.is_empty()
    }

    /// A reload may apply the new configuration: nothing needs a restart.
    pub fn reloadable_without_restart(&self) -> bool {
        self.restart.is_empty()
    }

    fn restart_if(&mut self, differs: bool, field: &str) {
        if differs {
            self.restart.push(field.to_string());
        }
    }

    fn reloadable_if(&mut self, differs: bool, field: &str) {
        if differs {
            self.reloadable.push(field.to_string());
        }
    }
}

/// What differs from `old` to `new`, and whether each difference can be
/// applied without a restart.
pub fn classify(old: &Config, new: &Config) -> Changes {
    let mut c = Changes::default();
    let Config {
        version,
        role,
        name,
        session,
        port,
        tunnel,
        peer,
        hub,
        links,
        control,
        metrics,
        status,
        os_signals,
        modem_manager_bus,
        auth,
        classes,
    } = old;
    c.restart_if(version != &new.version, "version");
    c.restart_if(role != &new.role, "role");
    c.restart_if(name != &new.name, "name");
    c.restart_if(session != &new.session, "session");
    c.restart_if(port != &new.port, "port");
    tunnel_changes(&mut c, tunnel, &new.tunnel);
    peer_changes(&mut c, peer.as_ref(), new.peer.as_ref());
    hub_changes(&mut c, hub.as_ref(), new.hub.as_ref());
    // Adaptive control takes a link's weight as its first capacity guess,
    // read at start-up; only static control writes weights as they are.
    let static_weights = control.mode == ControlMode::Static && new.control.mode == ControlMode::Static;
    link_changes(&mut c, links, &new.links, static_weights);
    control_changes(&mut c, control, &new.control);
    metrics_changes(&mut c, metrics, &new.metrics);
    status_changes(&mut c, status, &new.status);
    // The advisors are started once with the data plane's handles.
    c.restart_if(os_signals != &new.os_signals, "os_signals");
    c.restart_if(modem_manager_bus != &new.modem_manager_bus, "modem_manager_bus");
    // Keys and the allowlist are read at start-up.
    c.restart_if(auth != &new.auth, "auth");
    // The classification table is one map entry, written again on reload.
    c.reloadable_if(classes != &new.classes, "classes");
    c
}

fn tunnel_changes(c: &mut Changes, old: &TunnelSection, new: &TunnelSection) {
    // The device, its addresses and MTU are made at start-up.
    let TunnelSection { name, address, address6, mtu } = old;
    c.restart_if(name != &new.name, "tunnel.name");
    c.restart_if(address != &new.address, "tunnel.address");
    c.restart_if(address6 != &new.address6, "tunnel.address6");
    c.restart_if(mtu != &new.mtu, "tunnel.mtu");
}

fn peer_changes(c: &mut Changes, old: Option<&PeerSection>, new: Option<&PeerSection>) {
    match (old, new) {
        (Some(PeerSection { address, address6, port }), Some(n)) => {
            c.restart_if(address != &n.address, "peer.address");
            c.restart_if(address6 != &n.address6, "peer.address6");
            c.restart_if(port != &n.port, "peer.port");
        }
        (None, None) => {}
        _ => c.restart_if(true, "peer"),
    }
}

fn hub_changes(c: &mut Changes, old: Option<&HubSection>, new: Option<&HubSection>) {
    match (old, new) {
        (Some(HubSection { interface, address, address6, gateway, gateway6 }), Some(n)) => {
            c.restart_if(interface != &n.interface, "hub.interface");
            c.restart_if(address != &n.address, "hub.address");
            c.restart_if(address6 != &n.address6, "hub.address6");
            c.restart_if(gateway != &n.gateway, "hub.gateway");
            c.restart_if(gateway6 != &n.gateway6, "hub.gateway6");
        }
        (None, None) => {}
        _ => c.restart_if(true, "hub"),
    }
}

/// Links are matched by id: one added or removed needs a restart (its
/// interface is resolved and attached at start-up), a changed weight does
/// not (under static control on both sides).
fn link_changes(c: &mut Changes, old: &[LinkSection], new: &[LinkSection], static_weights: bool) {
    let ids = |links: &[LinkSection]| {
        let mut ids: Vec<u8> = links.iter().map(|l| l.id).collect();
        ids.sort_unstable();
        ids
    };
    if ids(old) != ids(new) {
        c.restart_if(true, "links (ids added or removed)");
    }
    for LinkSection { id, interface, weight, gateway, address } in old {
        let Some(n) = new.iter().find(|n| n.id == *id) else { continue };
        c.restart_if(interface != &n.interface, &format!("links[{id}].interface"));
        let field = format!("links[{id}].weight");
        // A weight to or from 0 enables or disables the link's transmit
        // entry, which is written at start-up.
        if static_weights && (*weight == 0) == (n.weight == 0) {
            c.reloadable_if(weight != &n.weight, &field);
        } else {
            c.restart_if(weight != &n.weight, &field);
        }
        c.restart_if(gateway != &n.gateway, &format!("links[{id}].gateway"));
        c.restart_if(address != &n.address, &format!("links[{id}].address"));
    }
}

fn control_changes(c: &mut Changes, old: &ControlSection, new: &ControlSection) {
    // The controller and the kernel's configuration map take these at
    // start-up (see the module's note).
    let ControlSection {
        mode,
        configured_mode,
        probe_interval_ms,
        drop_late,
        update_interval_ms,
        train_interval_ms,
        train_packets,
        train_bytes,
        silence_demote_ms,
        silence_hold_ms,
        jitter_demote_ms,
        jitter_healthy_ms,
        loss_demote,
        loss_healthy,
        max_rtt_ms,
        congestion_queue_ms,
        admit_after_ms,
        warm_ms,
        readmit_after_ms,
        cooldown_after_ms,
        cooldown_ms,
        gone_after_ms,
        delay_half_ms,
        headroom,
        probe_gain,
        backlog_limit_ms,
        loss_penalty_ms,
        deadline_ms,
        best_effort_deadline_share,
    } = old;
    c.restart_if(mode != &new.mode, "control.mode");
    c.restart_if(configured_mode != &new.configured_mode, "control.configured_mode");
    c.restart_if(probe_interval_ms != &new.probe_interval_ms, "control.probe_interval_ms");
    c.restart_if(drop_late != &new.drop_late, "control.drop_late");
    c.restart_if(update_interval_ms != &new.update_interval_ms, "control.update_interval_ms");
    c.restart_if(train_interval_ms != &new.train_interval_ms, "control.train_interval_ms");
    c.restart_if(train_packets != &new.train_packets, "control.train_packets");
    c.restart_if(train_bytes != &new.train_bytes, "control.train_bytes");
    c.restart_if(silence_demote_ms != &new.silence_demote_ms, "control.silence_demote_ms");
    c.restart_if(silence_hold_ms != &new.silence_hold_ms, "control.silence_hold_ms");
    c.restart_if(jitter_demote_ms != &new.jitter_demote_ms, "control.jitter_demote_ms");
    c.restart_if(jitter_healthy_ms != &new.jitter_healthy_ms, "control.jitter_healthy_ms");
    c.restart_if(loss_demote != &new.loss_demote, "control.loss_demote");
    c.restart_if(loss_healthy != &new.loss_healthy, "control.loss_healthy");
    c.restart_if(max_rtt_ms != &new.max_rtt_ms, "control.max_rtt_ms");
    c.restart_if(congestion_queue_ms != &new.congestion_queue_ms, "control.congestion_queue_ms");
    c.restart_if(admit_after_ms != &new.admit_after_ms, "control.admit_after_ms");
    c.restart_if(warm_ms != &new.warm_ms, "control.warm_ms");
    c.restart_if(readmit_after_ms != &new.readmit_after_ms, "control.readmit_after_ms");
    c.restart_if(cooldown_after_ms != &new.cooldown_after_ms, "control.cooldown_after_ms");
    c.restart_if(cooldown_ms != &new.cooldown_ms, "control.cooldown_ms");
    c.restart_if(gone_after_ms != &new.gone_after_ms, "control.gone_after_ms");
    c.restart_if(delay_half_ms != &new.delay_half_ms, "control.delay_half_ms");
    c.restart_if(headroom != &new.headroom, "control.headroom");
    c.restart_if(probe_gain != &new.probe_gain, "control.probe_gain");
    c.restart_if(backlog_limit_ms != &new.backlog_limit_ms, "control.backlog_limit_ms");
    c.restart_if(loss_penalty_ms != &new.loss_penalty_ms, "control.loss_penalty_ms");
    c.restart_if(deadline_ms != &new.deadline_ms, "control.deadline_ms");
    c.restart_if(
        best_effort_deadline_share != &new.best_effort_deadline_share,
        "control.best_effort_deadline_share",
    );
}

fn metrics_changes(c: &mut Changes, old: &MetricsSection, new: &MetricsSection) {
    // The listener is bound and the tracepoints attached at start-up.
    let MetricsSection { listen, kernel_sampling } = old;
    c.restart_if(listen != &new.listen, "metrics.listen");
    c.restart_if(kernel_sampling != &new.kernel_sampling, "metrics.kernel_sampling");
}

fn status_changes(c: &mut Changes, old: &StatusSection, new: &StatusSection) {
    // The socket's group is set when it is bound.
    let StatusSection { group } = old;
    c.restart_if(group != &new.group, "status.group");
}

#[cfg(test)]
mod tests {
    use super::*;

    const EDGE: &str = "version = 1\nrole = \"edge\"\nsession = 7\n[control]\nmode = \"static\"\n[tunnel]\naddress = \"10.99.0.1/30\"\n\
                        [peer]\naddress = \"198.19.0.2\"\n\
                        [[links]]\nid = 0\ninterface = \"lnk0\"\nweight = 1\n\
                        [[links]]\nid = 1\ninterface = \"lnk1\"\nweight = 2\n";

    fn edge(edit: impl Fn(&str) -> String) -> Config {
        Config::parse(&edit(EDGE), "test").expect("a valid test configuration")
    }

    #[test]
    fn the_same_configuration_has_no_changes() {
        let c = classify(&edge(str::to_string), &edge(str::to_string));
        assert!(c.is_empty(), "{c:?}");
    }

    #[test]
    fn a_weight_is_reloadable() {
        let c = classify(&edge(str::to_string), &edge(|s| s.replace("weight = 2", "weight = 5")));
        assert_eq!(c.reloadable, ["links[1].weight"]);
        assert!(c.reloadable_without_restart());
    }

    #[test]
    fn identity_addresses_and_tunables_need_a_restart() {
        let c = classify(
            &edge(str::to_string),
            &edge(|s| {
                s.replace("session = 7", "session = 8")
                    .replace("lnk1", "wwan1")
                    .replace("198.19.0.2", "198.19.0.3")
                    .replace("10.99.0.1/30", "10.99.0.5/30")
                    .replace("mode = \"static\"", "mode = \"static\"\nloss_demote = 0.5")
            }),
        );
        assert_eq!(
            c.restart,
            ["session", "tunnel.address", "peer.address", "links[1].interface", "control.loss_demote"]
        );
        assert!(!c.reloadable_without_restart());
    }

    #[test]
    fn under_adaptive_control_a_weight_needs_a_restart() {
        let adaptive = |s: &str| s.replace("static", "adaptive");
        let c = classify(&edge(adaptive), &edge(|s| adaptive(s).replace("weight = 2", "weight = 5")));
        assert_eq!(c.restart, ["links[1].weight"]);
    }

    #[test]
    fn a_link_added_needs_a_restart_while_weights_of_the_others_reload() {
        let c = classify(
            &edge(str::to_string),
            &edge(|s| s.replace("weight = 1", "weight = 3") + "[[links]]\nid = 2\ninterface = \"lnk2\"\n"),
        );
        assert_eq!(c.restart, ["links (ids added or removed)"]);
        assert_eq!(c.reloadable, ["links[0].weight"]);
    }
}
