//! Serial-number arithmetic for 32-bit wrapping sequence numbers (RFC 1982).
//!
//! Sequence numbers are compared by their wrapping distance, so `0` comes
//! right after `u32::MAX`. Two numbers more than 2^31 apart are not ordered
//! meaningfully; Strata never has that many packets in flight.

/// `a` is strictly after `b`.
#[inline(always)]
pub const fn seq_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// How far `a` is ahead of `b` (negative when behind).
#[inline(always)]
pub const fn seq_distance(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// Where a global sequence falls relative to the anti-replay window (see
/// [`classify_global`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// Ahead of the highest accepted, by at most a window: advances it.
    Ahead,
    /// At or behind the highest accepted, within the window: checked
    /// against the bitmap.
    Within,
    /// Behind the window, as a late or replayed packet would be: dropped.
    TooOld,
    /// Implausibly far from the highest accepted (more than a window ahead,
    /// or behind by more than any queue holds, or behind the window after
    /// a silence): a restarted sender or a forgery, dropped until a second
    /// packet close to it confirms the jump.
    Jump,
}

/// Classifies a global sequence `ahead` of the highest accepted (negative:
/// behind). `quiet`: nothing was accepted for `REPLAY_QUIET_NS`.
pub const fn classify_global(ahead: i32, quiet: bool) -> Window {
    use crate::maps::{REPLAY_RESTART_DISTANCE, REPLAY_WINDOW};
    // i64: the distance behind of i32::MIN does not fit an i32.
    let behind = -(ahead as i64);
    if ahead > 0 {
        if ahead as u32 <= REPLAY_WINDOW { Window::Ahead } else { Window::Jump }
    } else if behind < REPLAY_WINDOW as i64 {
        Window::Within
    } else if quiet || behind > REPLAY_RESTART_DISTANCE as i64 {
        Window::Jump
    } else {
        Window::TooOld
    }
}

/// Whether a second out-of-window sequence `seq` confirms the jump to
/// `candidate`: it is a different packet of the same neighbourhood (within a
/// window either side, as the packets after a restart arrive reordered over
/// the links).
pub const fn confirms_jump(seq: u32, candidate: u32) -> bool {
    use crate::maps::REPLAY_WINDOW;
    let d = seq_distance(seq, candidate) as i64;
    d != 0 && d.abs() <= REPLAY_WINDOW as i64
}

/// Whether an anti-replay bitmap word tagged `held` records a block newer
/// than the one tagged `tag` that shares its word (a whole bitmap or two
/// ahead): `tag`'s block has left the window, its word taken by a CPU that
/// advanced the anchor after this one read it. Tags are a block's first
/// sequence with bit 0 set (0: an empty word). A tag further ahead than
/// two bitmaps is left over from before a re-anchoring, as is one behind:
/// both are to be replaced, not obeyed.
pub const fn holds_newer_block(held: u32, tag: u32) -> bool {
    use crate::maps::{REPLAY_BLOCK, REPLAY_SLOTS};
    let ahead = held.wrapping_sub(tag);
    held & 1 != 0 && ahead != 0 && ahead <= 2 * REPLAY_SLOTS * REPLAY_BLOCK
}

/// How far a link's sequence may jump ahead at once after `silent_ns`
/// without a packet on the link, and the gap still count as loss: the
/// fixed allowance plus what the link could have carried meanwhile at its
/// fastest (see `LINK_NS_PER_PACKET_MIN`), at most 2^30.
pub const fn plausible_link_jump(silent_ns: u64) -> i32 {
    use crate::maps::{LINK_NS_PER_PACKET_MIN, LINK_SEQ_JUMP_DISTANCE};
    let d = LINK_SEQ_JUMP_DISTANCE as u64 + silent_ns / LINK_NS_PER_PACKET_MIN;
    if d > 1 << 30 { 1 << 30 } else { d as i32 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::{REPLAY_RESTART_DISTANCE, REPLAY_WINDOW};

    #[test]
    fn global_sequences_are_classified_against_the_window() {
        let w = REPLAY_WINDOW as i32;
        assert_eq!(classify_global(1, false), Window::Ahead);
        assert_eq!(classify_global(w, false), Window::Ahead);
        assert_eq!(classify_global(w + 1, false), Window::Jump, "beyond a window ahead");
        assert_eq!(classify_global(0, false), Window::Within);
        assert_eq!(classify_global(-(w - 1), false), Window::Within);
        assert_eq!(classify_global(-w, false), Window::TooOld);
        assert_eq!(classify_global(-(REPLAY_RESTART_DISTANCE as i32), false), Window::TooOld);
        assert_eq!(classify_global(-(REPLAY_RESTART_DISTANCE as i32) - 1, false), Window::Jump);
        assert_eq!(classify_global(i32::MIN, false), Window::Jump);
        assert_eq!(classify_global(i32::MAX, false), Window::Jump);
        // After a silence, anything behind the window may be a restart.
        assert_eq!(classify_global(-w, true), Window::Jump);
        assert_eq!(classify_global(-5, true), Window::Within);
    }

    #[test]
    fn a_bitmap_word_is_obeyed_only_when_it_holds_a_block_a_bitmap_or_two_newer() {
        use crate::maps::{REPLAY_BLOCK, REPLAY_SLOTS};
        let bitmap = REPLAY_SLOTS * REPLAY_BLOCK;
        let tag = 0x1000 | 1;
        assert!(holds_newer_block(tag + bitmap, tag), "the word was claimed for a newer block");
        assert!(holds_newer_block(tag + 2 * bitmap, tag));
        assert!(!holds_newer_block(tag, tag), "the same block: its bits decide");
        assert!(!holds_newer_block(0, tag), "an empty word");
        assert!(!holds_newer_block(tag.wrapping_sub(bitmap), tag), "an older block has left the window");
        assert!(!holds_newer_block(tag + 3 * bitmap, tag), "left over from before a re-anchoring");
        let last = (u32::MAX - 31) | 1;
        assert!(holds_newer_block(last.wrapping_add(bitmap), last), "across the wrap");
    }

    #[test]
    fn a_link_may_jump_further_the_longer_it_was_silent() {
        use crate::maps::LINK_SEQ_JUMP_DISTANCE;
        assert_eq!(plausible_link_jump(0), LINK_SEQ_JUMP_DISTANCE);
        assert_eq!(plausible_link_jump(1_000_000_000), LINK_SEQ_JUMP_DISTANCE + 100_000);
        assert_eq!(plausible_link_jump(u64::MAX), 1 << 30);
    }

    #[test]
    fn a_jump_is_confirmed_only_by_another_packet_near_it() {
        assert!(confirms_jump(101, 100) && confirms_jump(99, 100));
        assert!(confirms_jump(3, u32::MAX - 3), "across the wrap");
        assert!(!confirms_jump(100, 100), "the same packet again confirms nothing");
        assert!(!confirms_jump(100 + REPLAY_WINDOW + 1, 100));
    }

    #[test]
    fn wraps() {
        assert!(seq_after(0, u32::MAX));
        assert!(seq_after(5, u32::MAX - 5));
        assert!(!seq_after(u32::MAX, 0));
        assert!(!seq_after(7, 7));
        assert_eq!(seq_distance(2, u32::MAX - 1), 4);
        assert_eq!(seq_distance(u32::MAX - 1, 2), -4);
    }
}
