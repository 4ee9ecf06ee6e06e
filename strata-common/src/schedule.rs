//! The double-buffered link schedule: which copy the kernel reads, and how
//! the controller replaces it without the kernel ever seeing half of one.
//!
//! A [`Schedule`] is 264 bytes and a map update is not atomic for readers on
//! other CPUs, so the `STRATA_SCHED` map holds two copies. The `active` field
//! of entry 0 says which copy is in use ([`active_index`]); the controller
//! writes the other copy completely and then flips that field, a single
//! 32-bit store, so every packet sees either the old schedule or the new one
//! ([`flip`]). Both the egress program and the controller go through these
//! functions, so they agree on which bit of `active` counts.

use crate::maps::Schedule;

/// Index of the schedule copy the kernel uses, given the `active` field of
/// entry 0 (only its lowest bit counts, so any value is a valid index).
#[inline(always)]
pub const fn active_index(entry0_active: u32) -> u32 {
    entry0_active & 1
}

/// The map writes, in order, that replace the schedule in use with `new`,
/// given the current entry 0.
///
/// * Copy 1 in standby (entry 0 active): write `new` into entry 1, then
///   rewrite entry 0 unchanged but for `active = 1`.
/// * Copy 0 in standby (entry 1 active): entry 0 carries the flag as well as
///   a schedule, so fill it with `new` while its flag still points readers to
///   entry 1, then write it again with the flag pointing to itself.
///
/// `new.active` is ignored.
pub const fn flip(entry0: &Schedule, new: &Schedule) -> [(u32, Schedule); 2] {
    if active_index(entry0.active) == 0 {
        [(1, Schedule { active: 0, ..*new }), (0, Schedule { active: 1, ..*entry0 })]
    } else {
        [(0, Schedule { active: 1, ..*new }), (0, Schedule { active: 0, ..*new })]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::SCHEDULE_SLOTS;

    fn schedule(len: u32, link: u8) -> Schedule {
        let mut s = Schedule { len, ..Schedule::default() };
        s.slots[..len as usize].fill(link);
        s
    }

    /// What the egress program sees: the (len, slots) of the copy entry 0 points to.
    fn seen(map: &[Schedule; 2]) -> (u32, [u8; SCHEDULE_SLOTS]) {
        let s = map[active_index(map[0].active) as usize];
        (s.len, s.slots)
    }

    #[test]
    fn only_the_lowest_bit_of_active_counts() {
        assert_eq!([0, 1, 2, 3, u32::MAX].map(active_index), [0, 1, 0, 1, 1]);
    }

    #[test]
    fn readers_see_the_old_schedule_or_the_new_one_after_every_write() {
        let mut map = [Schedule::default(); 2];
        let mut current = seen(&map);
        for round in 0..6u8 {
            let new = schedule(10 + u32::from(round), round);
            let wanted = (new.len, new.slots);
            for (index, value) in flip(&map[0], &new) {
                map[index as usize] = value;
                let now = seen(&map);
                assert!(now == current || now == wanted, "round {round}: a mixed schedule");
            }
            assert!(seen(&map) == wanted, "round {round}: the new schedule is not in use");
            current = wanted;
        }
    }

    #[test]
    fn a_flip_alternates_the_active_copy() {
        let mut map = [Schedule::default(); 2];
        for expected in [1, 0, 1, 0] {
            for (index, value) in flip(&map[0], &schedule(3, 1)) {
                map[index as usize] = value;
            }
            assert_eq!(active_index(map[0].active), expected);
        }
    }
}
