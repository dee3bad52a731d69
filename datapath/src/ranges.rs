//! Which parts of the backend slot array are free: each service's table is a contiguous range,
//! allocated first fit and merged with its neighbours when freed.
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRanges {
    /// start -> length of every free range; never two adjacent.
    free: BTreeMap<u32, u32>,
}

impl SlotRanges {
    /// An array of `size` slots with the `used` ranges (start, length) taken: what an agent
    /// finds in maps an earlier one left. Overlapping or out-of-bounds ranges take what they
    /// cover.
    pub fn with_used(size: u32, used: impl IntoIterator<Item = (u32, u32)>) -> SlotRanges {
        let mut used: Vec<(u32, u32)> = used.into_iter().filter(|(_, len)| *len > 0).collect();
        used.sort_unstable();
        let mut free = BTreeMap::new();
        let mut cursor = 0u32;
        for (start, len) in used {
            let start = start.min(size);
            if start > cursor {
                free.insert(cursor, start - cursor);
            }
            cursor = cursor.max(start.saturating_add(len).min(size));
        }
        if cursor < size {
            free.insert(cursor, size - cursor);
        }
        SlotRanges { free }
    }

    /// The start of a free range of `len` slots, now taken; `None` when no range is long
    /// enough. An empty table takes nothing.
    pub fn allocate(&mut self, len: u32) -> Option<u32> {
        if len == 0 {
            return Some(0);
        }
        let (&start, &free_len) = self.free.iter().find(|(_, l)| **l >= len)?;
        self.free.remove(&start);
        if free_len > len {
            self.free.insert(start + len, free_len - len);
        }
        Some(start)
    }

    /// Gives a range back, merged with free neighbours.
    pub fn release(&mut self, start: u32, len: u32) {
        if len == 0 {
            return;
        }
        let (mut start, mut len) = (start, len);
        if let Some((&prev, &prev_len)) = self.free.range(..start).next_back()
            && prev + prev_len == start
        {
            self.free.remove(&prev);
            start = prev;
            len += prev_len;
        }
        if let Some(next_len) = self.free.remove(&(start + len)) {
            len += next_len;
        }
        self.free.insert(start, len);
    }

    /// The longest run of free slots: the largest table that fits now.
    pub fn longest_free(&self) -> u32 {
        self.free.values().copied().max().unwrap_or(0)
    }

    /// Free slots in all.
    pub fn free_slots(&self) -> u64 {
        self.free.values().map(|l| u64::from(*l)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_first_fit_and_merges_on_release() {
        let mut r = SlotRanges::with_used(100, []);
        let a = r.allocate(10).unwrap();
        let b = r.allocate(20).unwrap();
        let c = r.allocate(30).unwrap();
        assert_eq!((a, b, c), (0, 10, 30));
        r.release(b, 20);
        // The hole is reused first fit.
        assert_eq!(r.allocate(5), Some(10));
        r.release(10, 5);
        r.release(a, 10);
        r.release(c, 30);
        assert_eq!(
            r,
            SlotRanges::with_used(100, []),
            "everything merged back into one range"
        );
        assert_eq!(r.free_slots(), 100);
    }

    #[test]
    fn refuses_what_does_not_fit_and_empty_tables_take_nothing() {
        let mut r = SlotRanges::with_used(10, [(0, 4), (6, 4)]);
        assert_eq!(r.allocate(3), None);
        assert_eq!(r.allocate(2), Some(4));
        assert_eq!(r.allocate(0), Some(0));
        assert_eq!(r.free_slots(), 0);
    }

    #[test]
    fn adoption_takes_the_complement_of_what_is_used() {
        let r = SlotRanges::with_used(20, [(15, 10), (2, 3), (4, 2)]);
        let mut expected = SlotRanges::with_used(20, []);
        expected.free = BTreeMap::from([(0, 2), (6, 9)]);
        assert_eq!(r, expected);
    }
}
