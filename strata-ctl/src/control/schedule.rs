//! From link weights to the kernel's per-packet link schedule.
//!
//! The egress program picks `slots[global_seq % len]` for every packet, so
//! the schedule decides both each link's share and how evenly its packets are
//! spread. [`build`] gives each link a number of slots proportional to its
//! weight — exactly, whenever the weights sum to at most 256 (`len` is then a
//! multiple of the sum) — and orders them with smooth weighted round robin,
//! so a link with weight 1 of 6 gets every sixth packet rather than a burst
//! of a sixth of the table.

use strata_common::maps::{MAX_LINKS, SCHEDULE_SLOTS, Schedule};

/// Weights per link id; 0 = the link carries nothing.
pub type Weights = [u32; MAX_LINKS as usize];

/// Builds a schedule (its `active` field is left 0 for the caller to set).
/// All-zero weights give an empty schedule (`len == 0`): nothing is sent.
pub fn build(weights: &Weights) -> Schedule {
    let slots_per_link = apportion(weights);
    let len: u32 = slots_per_link.iter().sum();
    let mut schedule = Schedule { len, ..Schedule::default() };

    // Smooth weighted round robin over the slot counts.
    let mut current = [0i64; MAX_LINKS as usize];
    for slot in schedule.slots.iter_mut().take(len as usize) {
        let mut best = None;
        for (id, &count) in slots_per_link.iter().enumerate() {
            if count == 0 {
                continue;
            }
            current[id] += i64::from(count);
            if best.is_none_or(|b: usize| current[id] > current[b]) {
                best = Some(id);
            }
        }
        let Some(id) = best else { break };
        current[id] -= i64::from(len);
        *slot = id as u8;
    }
    schedule
}

/// Slots per link: proportional to the weights, every weighted link at least
/// one slot, at most [`SCHEDULE_SLOTS`] in all.
fn apportion(weights: &Weights) -> [u32; MAX_LINKS as usize] {
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    let mut out = [0u32; MAX_LINKS as usize];
    if total == 0 {
        return out;
    }
    let capacity = SCHEDULE_SLOTS as u64;
    if total <= capacity {
        let scale = capacity / total;
        for (o, &w) in out.iter_mut().zip(weights) {
            *o = (u64::from(w) * scale) as u32;
        }
        return out;
    }
    // Largest remainder (Hamilton) with a floor of one slot per weighted link.
    let weighted = weights.iter().filter(|&&w| w > 0).count() as u64;
    let spare = capacity - weighted;
    let mut remainders = [(0u64, 0usize); MAX_LINKS as usize];
    let mut used = 0u64;
    for (id, &w) in weights.iter().enumerate() {
        if w == 0 {
            continue;
        }
        let exact = u64::from(w) * spare;
        out[id] = 1 + (exact / total) as u32;
        used += u64::from(out[id]);
        remainders[id] = (exact % total, id);
    }
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, id) in remainders.iter().take((capacity - used) as usize) {
        if weights[id] > 0 {
            out[id] += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn counts(s: &Schedule) -> [u32; 8] {
        let mut c = [0; 8];
        for &id in &s.slots[..s.len as usize] {
            c[usize::from(id)] += 1;
        }
        c
    }

    #[test]
    fn exact_shares_when_weights_are_small() {
        let s = build(&[1, 2, 3, 0, 0, 0, 0, 0]);
        assert_eq!(s.len, 252);
        assert_eq!(counts(&s)[..4], [42, 84, 126, 0]);
        // Spread evenly: the first 6 slots already hold the 1:2:3 mix.
        let mut first = [0; 8];
        for &id in &s.slots[..6] {
            first[usize::from(id)] += 1;
        }
        assert_eq!(first[..3], [1, 2, 3]);
    }

    #[test]
    fn zero_weights_give_an_empty_schedule() {
        assert_eq!(build(&[0; 8]).len, 0);
    }

    proptest! {
        #[test]
        fn shares_follow_weights(weights in proptest::array::uniform8(0u32..=1000)) {
            let s = build(&weights);
            let c = counts(&s);
            let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
            prop_assert!(s.len as usize <= SCHEDULE_SLOTS);
            for id in 0..8 {
                if weights[id] == 0 {
                    prop_assert_eq!(c[id], 0, "weight 0 must get no slot");
                } else {
                    prop_assert!(c[id] >= 1);
                    // The one-slot floor for light links can shift up to one
                    // slot per weighted link away from the exact share.
                    let weighted = weights.iter().filter(|&&w| w > 0).count() as f64;
                    let ideal = f64::from(weights[id]) / total as f64 * f64::from(s.len);
                    prop_assert!((f64::from(c[id]) - ideal).abs() <= weighted.max(1.0) + 1e-9,
                        "link {id}: {} slots, ideal {ideal:.2}", c[id]);
                }
            }
        }
    }
}
