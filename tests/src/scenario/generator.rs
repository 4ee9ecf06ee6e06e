//! Application traffic for scenarios, planned ahead as a list of datagrams.
//!
//! Planning first (pure, deterministic) and sending second keeps the
//! generators testable and lets the analyzer know exactly what was offered.
//! Every datagram starts with the [`crate::traffic`] prefix (sequence, send
//! time) followed by its flow id, so the receiver needs no other state.

use super::spec::TrafficSpec;

/// Bytes of one video packet: 7 MPEG-TS packets of 188 bytes.
pub const VIDEO_PACKET: usize = 1316;
/// An I-frame is this many times a P-frame.
pub const I_FRAME_FACTOR: u32 = 5;
/// Smallest datagram (prefix and flow id).
pub const MIN_DATAGRAM: usize = crate::traffic::PREFIX_LEN + 1;
/// UDP port of flow 0 at the receiver; flow `i` uses `BASE_PORT + i`.
pub const BASE_PORT: u16 = 6000;

/// One flow.
#[derive(Clone, Debug, PartialEq)]
pub struct Flow {
    /// Flow id (index in the scenario's traffic list).
    pub id: u8,
    /// `video`, `telemetry` or `cbr`.
    pub class: &'static str,
    /// DSCP marked on its packets.
    pub dscp: u8,
    /// Receiver port.
    pub port: u16,
    /// Mean offered rate, Mbit/s of UDP payload.
    pub mbit_s: f64,
}

/// One datagram to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Planned {
    /// When, ns from the start of traffic.
    pub at_ns: u64,
    /// Flow id.
    pub flow: u8,
    /// Sequence within the flow.
    pub seq: u64,
    /// UDP payload bytes.
    pub len: usize,
}

/// Plans every flow for `duration_s`; `aggregate_mbit_s` resolves `load` fractions.
pub fn plan(traffic: &[TrafficSpec], aggregate_mbit_s: f64, duration_s: f64) -> (Vec<Flow>, Vec<Planned>) {
    let end_ns = (duration_s * 1e9) as u64;
    let mut flows = Vec::new();
    let mut all = Vec::new();
    for (i, spec) in traffic.iter().enumerate() {
        let id = i as u8;
        let mut seq = 0;
        let mut push = |all: &mut Vec<Planned>, at_ns: u64, len: usize| {
            all.push(Planned { at_ns, flow: id, seq, len: len.max(MIN_DATAGRAM) });
            seq += 1;
        };
        let (class, dscp, mbit_s) = match *spec {
            TrafficSpec::Video { mbit_s, load, fps, gop } => {
                let rate = mbit_s.unwrap_or_else(|| load.unwrap_or(0.0) * aggregate_mbit_s);
                let (fps, gop) = (fps.max(1), gop.max(1));
                let gop_bytes = rate * 1e6 / 8.0 * f64::from(gop) / f64::from(fps);
                let p_bytes = gop_bytes / f64::from(gop - 1 + I_FRAME_FACTOR);
                let interval = 1e9 / f64::from(fps);
                let mut frame = 0u64;
                loop {
                    let at = (frame as f64 * interval) as u64;
                    if at >= end_ns {
                        break;
                    }
                    let factor = if frame.is_multiple_of(u64::from(gop)) { I_FRAME_FACTOR } else { 1 };
                    let mut left = (p_bytes * f64::from(factor)).round() as usize;
                    // A frame leaves as one burst of full TS-sized packets.
                    while left > 0 {
                        let len = left.min(VIDEO_PACKET);
                        push(&mut all, at, len);
                        left -= len;
                    }
                    frame += 1;
                }
                ("video", 34, rate)
            }
            TrafficSpec::Telemetry { hz, bytes } => {
                let interval = 1e9 / f64::from(hz.max(1));
                let mut k = 0u64;
                while ((k as f64) * interval) < end_ns as f64 {
                    push(&mut all, (k as f64 * interval) as u64, bytes);
                    k += 1;
                }
                ("telemetry", 46, f64::from(hz) * bytes as f64 * 8.0 / 1e6)
            }
            TrafficSpec::Cbr { mbit_s, load, bytes } => {
                let rate = mbit_s.unwrap_or_else(|| load.unwrap_or(0.0) * aggregate_mbit_s);
                let bytes = bytes.max(MIN_DATAGRAM);
                if rate > 0.0 {
                    let interval = bytes as f64 * 8.0 / (rate * 1e6) * 1e9;
                    let mut k = 0u64;
                    while ((k as f64) * interval) < end_ns as f64 {
                        push(&mut all, (k as f64 * interval) as u64, bytes);
                        k += 1;
                    }
                }
                ("cbr", 0, rate)
            }
        };
        flows.push(Flow { id, class, dscp, port: BASE_PORT + u16::from(id), mbit_s });
    }
    all.sort_by_key(|p| (p.at_ns, p.flow, p.seq));
    (flows, all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_has_i_frame_bursts_and_the_right_rate() {
        let spec = [TrafficSpec::Video { mbit_s: Some(6.0), load: None, fps: 30, gop: 30 }];
        let (flows, planned) = plan(&spec, 0.0, 10.0);
        assert_eq!(flows[0].dscp, 34);
        let bytes: usize = planned.iter().map(|p| p.len).sum();
        let mbit_s = bytes as f64 * 8.0 / 10.0 / 1e6;
        assert!((mbit_s - 6.0).abs() < 0.05, "{mbit_s}");
        // Frame 0 (I) is five times frame 1 (P).
        let frame = |ns: u64| planned.iter().filter(|p| p.at_ns == ns).map(|p| p.len).sum::<usize>();
        let (i, p) = (frame(0), frame(33_333_333));
        assert!((i as f64 / p as f64 - 5.0).abs() < 0.01, "I {i} P {p}");
        assert!(planned.iter().all(|p| p.len <= VIDEO_PACKET));
        assert!(planned.windows(2).all(|w| w[0].seq < w[1].seq), "sequence numbers increase");
    }

    #[test]
    fn telemetry_and_cbr_are_regular_and_load_scales() {
        let spec = [
            TrafficSpec::Telemetry { hz: 100, bytes: 200 },
            TrafficSpec::Cbr { mbit_s: None, load: Some(0.5), bytes: 1000 },
        ];
        let (flows, planned) = plan(&spec, 8.0, 2.0);
        assert_eq!(planned.iter().filter(|p| p.flow == 0).count(), 200);
        assert!((flows[1].mbit_s - 4.0).abs() < 1e-9);
        assert_eq!(planned.iter().filter(|p| p.flow == 1).count(), 1000);
        assert!(planned.windows(2).all(|w| w[0].at_ns <= w[1].at_ns), "time-ordered");
    }
}
