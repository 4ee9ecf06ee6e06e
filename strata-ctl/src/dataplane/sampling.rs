//! Host-side sampling (optional, `[metrics] kernel_sampling`): the links' own
//! queueing delay and the kernel's drops by reason, measured by the tracepoint
//! programs of `strata-ebpf/src/sampling/`.
//!
//! Why tracepoints read at tracefs offsets, not kernel structures through
//! BTF: `net:net_dev_queue`, `net:net_dev_start_xmit` and `skb:kfree_skb`
//! carry everything needed (skb address, device name, drop reason), and
//! their record layouts are published by the running kernel in tracefs
//! `format` files — the same portability CO-RE gives for structures, without
//! relocating any (aya's Rust eBPF side cannot emit CO-RE relocations, and
//! reading `sk_buff` members would need them). The names of the drop reasons
//! come from the same file, so they match the kernel that counted them.

use std::path::Path;

use aya::maps::{Map, MapData, PerCpuArray};
use strata_common::maps::{DELAY_BUCKETS, DELAY_ROW, DROP_REASONS, SAMPLE_SLOTS, SampleConfig};

use strata_common::maps::names as map_names;

/// Where tracefs is usually mounted.
const TRACEFS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// What the running kernel's tracepoints look like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracepoints {
    /// Offsets for the programs.
    pub config: SampleConfig,
    /// `enum skb_drop_reason` value → name, as the kernel prints it.
    pub drop_reasons: Vec<(u32, String)>,
}

/// Reads the three tracepoint formats; the error says what is missing.
pub fn tracepoints() -> Result<Tracepoints, String> {
    let root =
        TRACEFS.iter().map(Path::new).find(|p| p.join("events").is_dir()).ok_or_else(|| {
            "tracefs is not mounted (mount -t tracefs nodev /sys/kernel/tracing)".to_string()
        })?;
    let format = |cat: &str, name: &str| {
        let path = root.join("events").join(cat).join(name).join("format");
        std::fs::read_to_string(&path)
            .map_err(|e| format!("tracepoint {cat}:{name} ({}): {e}", path.display()))
    };
    let (queue, xmit, drop) =
        (format("net", "net_dev_queue")?, format("net", "net_dev_start_xmit")?, format("skb", "kfree_skb")?);
    let field = |text: &str, tp: &str, field: &str| {
        field_offset(text, field).ok_or_else(|| format!("tracepoint {tp} has no field {field:?}"))
    };
    Ok(Tracepoints {
        config: SampleConfig {
            queue_skbaddr: field(&queue, "net_dev_queue", "skbaddr")?,
            queue_name: field(&queue, "net_dev_queue", "name")?,
            xmit_skbaddr: field(&xmit, "net_dev_start_xmit", "skbaddr")?,
            drop_skbaddr: field(&drop, "kfree_skb", "skbaddr")?,
            drop_reason: field(&drop, "kfree_skb", "reason")?,
            ready: 0,
        },
        drop_reasons: reason_names(&drop),
    })
}

/// The offset of `field` in a tracepoint `format` text.
pub fn field_offset(format: &str, field: &str) -> Option<u32> {
    format.lines().find_map(|line| {
        let decl = line.trim().strip_prefix("field:")?.split(';').next()?;
        let name = decl.rsplit([' ', '*']).next()?.trim_end_matches("[]");
        if name != field {
            return None;
        }
        let offset = line.split(';').find_map(|p| p.trim().strip_prefix("offset:"))?;
        offset.trim().parse().ok()
    })
}

/// The `{ value, "NAME" }` pairs of the `print fmt` of `kfree_skb`.
pub fn reason_names(format: &str) -> Vec<(u32, String)> {
    let Some(table) = format.split("__print_symbolic(").nth(1) else { return Vec::new() };
    table
        .split('{')
        .skip(1)
        .filter_map(|entry| {
            let (value, rest) = entry.split_once(',')?;
            let name = rest.split('"').nth(1)?;
            Some((value.trim().parse().ok()?, name.to_string()))
        })
        .collect()
}

/// What the sampling programs aggregated, summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Samples {
    /// Per link id: packets per delay bucket (see `DELAY_BUCKETS`).
    pub delay: Vec<[u64; DELAY_BUCKETS as usize]>,
    /// Per link id: the sum of those delays, ns.
    pub delay_sum_ns: Vec<u64>,
    /// Per link id: (reason value, packets), non-zero only.
    pub drops: Vec<Vec<(u32, u64)>>,
}

/// Reads the sampling maps pinned in `dir`.
pub fn read(dir: &Path) -> Result<Samples, String> {
    let open = |name: &str| -> Result<Map, String> {
        let path = dir.join(name);
        let data = MapData::from_pin(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Map::from_map_data(data).map_err(|e| format!("{}: {e}", path.display()))
    };
    let (qdelay, kdrops) = (open(map_names::QDELAY)?, open(map_names::KDROPS)?);
    let qdelay: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(&qdelay).map_err(|e| e.to_string())?;
    let kdrops: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(&kdrops).map_err(|e| e.to_string())?;
    let sum =
        |m: &PerCpuArray<&MapData, u64>, i: u32| m.get(&i, 0).map(|v| v.iter().sum::<u64>()).unwrap_or(0);
    let mut samples = Samples::default();
    for slot in 0..SAMPLE_SLOTS {
        let mut h = [0u64; DELAY_BUCKETS as usize];
        for (b, v) in h.iter_mut().enumerate() {
            *v = sum(&qdelay, slot * DELAY_ROW + b as u32);
        }
        samples.delay.push(h);
        samples.delay_sum_ns.push(sum(&qdelay, slot * DELAY_ROW + DELAY_BUCKETS));
        let drops = (0..DROP_REASONS)
            .filter_map(|r| Some((r, sum(&kdrops, slot * DROP_REASONS + r))).filter(|&(_, n)| n > 0))
            .collect();
        samples.drops.push(drops);
    }
    Ok(samples)
}

/// The drops alone, of the link slots in `slots`, for the reason values in
/// `reasons` — what `strata-ctl status` shows. Reading every slot and every
/// possible reason ([`read`]) costs thousands of map lookups, which a status
/// answer inside 100 ms cannot spend; the kernel's tracepoint format lists
/// every reason it can report, so nothing counted is left out.
pub fn read_drops(dir: &Path, slots: &[u8], reasons: &[u32]) -> Result<Vec<Vec<(u32, u64)>>, String> {
    let path = dir.join(map_names::KDROPS);
    let data = MapData::from_pin(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let map = Map::from_map_data(data).map_err(|e| format!("{}: {e}", path.display()))?;
    let kdrops: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(&map).map_err(|e| e.to_string())?;
    let sum = |i: u32| kdrops.get(&i, 0).map(|v| v.iter().sum::<u64>()).unwrap_or(0);
    Ok(slots
        .iter()
        .map(|&slot| {
            reasons
                .iter()
                .filter(|&&r| r < DROP_REASONS && u32::from(slot) < SAMPLE_SLOTS)
                .filter_map(|&r| Some((r, sum(u32::from(slot) * DROP_REASONS + r))).filter(|&(_, n)| n > 0))
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KFREE: &str = "name: kfree_skb\nID: 2310\nformat:\n\
        \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
        \tfield:void * skbaddr;\toffset:8;\tsize:8;\tsigned:0;\n\
        \tfield:void * location;\toffset:16;\tsize:8;\tsigned:0;\n\
        \tfield:enum skb_drop_reason reason;\toffset:36;\tsize:4;\tsigned:0;\n\n\
        print fmt: \"skbaddr=%p reason: %s\", REC->skbaddr, __print_symbolic(REC->reason, { 2, \"NOT_SPECIFIED\" }, { 64, \"QDISC_DROP\" }, { 128, \"MAX\" })\n";

    #[test]
    fn formats_give_offsets_and_reason_names() {
        assert_eq!(field_offset(KFREE, "skbaddr"), Some(8));
        assert_eq!(field_offset(KFREE, "reason"), Some(36));
        assert_eq!(field_offset(KFREE, "nope"), None);
        let name = "\tfield:__data_loc char[] name;\toffset:20;\tsize:4;\tsigned:0;\n";
        assert_eq!(field_offset(name, "name"), Some(20));
        assert_eq!(
            reason_names(KFREE),
            vec![(2, "NOT_SPECIFIED".into()), (64, "QDISC_DROP".into()), (128, "MAX".into())]
        );
    }

    #[test]
    fn this_kernels_tracepoints_are_read_if_tracefs_is_there() {
        // A kernel without tracefs mounted is a legitimate state; then the
        // error must say so.
        match tracepoints() {
            Ok(t) => {
                assert!(t.config.queue_skbaddr > 0 && t.config.drop_reason > 0);
                assert!(t.drop_reasons.iter().any(|(_, n)| n == "QDISC_DROP"), "{:?}", t.drop_reasons);
            }
            Err(e) => assert!(e.contains("tracefs") || e.contains("tracepoint"), "{e}"),
        }
    }
}
