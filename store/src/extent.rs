//! A file's extent map: runs of file blocks mapped to contiguous data blocks,
//! keyed by their first file block. Neighbours that continue each other (file
//! and data blocks contiguous, same state) are kept merged, so a lookup finds
//! the longest run at once.

use std::collections::BTreeMap;

/// One run: `len` file blocks from its key, backed by data blocks `dev..dev + len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Extent {
    /// Blocks in the run (at least 1).
    pub len: u64,
    /// First data block.
    pub dev: u64,
    /// Allocated but not yet written: reads see zeros.
    pub unwritten: bool,
    /// Possibly shared with another file block (a hint kept in memory so the
    /// overwrite path needs no allocator lock; the reference counts decide).
    pub shared: bool,
}

impl Extent {
    /// Whether `next`, starting `self.len` file blocks after `self`, continues it.
    fn continued_by(&self, next: &Extent) -> bool {
        self.dev + self.len == next.dev
            && self.unwritten == next.unwritten
            && self.shared == next.shared
    }
}

/// A file's block map as extents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ExtentMap {
    map: BTreeMap<u64, Extent>,
    blocks: u64,
}

impl ExtentMap {
    /// Blocks mapped.
    pub(crate) fn blocks(&self) -> u64 {
        self.blocks
    }

    /// The extent holding file block `fb`, as (its first file block, extent).
    #[inline]
    pub(crate) fn find(&self, fb: u64) -> Option<(u64, Extent)> {
        let (&s, e) = self.map.range(..=fb).next_back()?;
        (fb - s < e.len).then_some((s, *e))
    }

    /// The first mapped file block at or after `fb`.
    pub(crate) fn next_mapped(&self, fb: u64) -> Option<u64> {
        if self.find(fb).is_some() {
            return Some(fb);
        }
        self.map.range(fb..).next().map(|(&k, _)| k)
    }

    /// Whether any block of `[fb, fb + n)` is mapped.
    pub(crate) fn any_in(&self, fb: u64, n: u64) -> bool {
        self.next_mapped(fb).is_some_and(|k| k - fb < n)
    }

    /// The last mapped file block.
    pub(crate) fn last_block(&self) -> Option<u64> {
        self.map.iter().next_back().map(|(&s, e)| s + e.len - 1)
    }

    /// The extents in file order, as (first file block, extent).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, Extent)> + '_ {
        self.map.iter().map(|(&s, e)| (s, *e))
    }

    /// The extents inside `[fb, fb + n)`, clipped to it, in file order.
    pub(crate) fn range(&self, fb: u64, n: u64) -> Vec<(u64, Extent)> {
        let end = fb.saturating_add(n);
        let start = self.find(fb).map_or(fb, |(s, _)| s);
        self.map
            .range(start..end)
            .map(|(&s, e)| clip(s, *e, fb, end))
            .collect()
    }

    /// Splits the extent holding `fb`, if any, so that one starts at `fb`.
    fn split_at(&mut self, fb: u64) {
        let Some((s, e)) = self.find(fb) else {
            return;
        };
        if s == fb {
            return;
        }
        let head = fb - s;
        if let Some(x) = self.map.get_mut(&s) {
            x.len = head;
        }
        self.map.insert(
            fb,
            Extent {
                len: e.len - head,
                dev: e.dev + head,
                ..e
            },
        );
    }

    /// Merges the extent at `fb` with the one before it and the one after it
    /// where they continue each other.
    fn merge_at(&mut self, fb: u64) {
        let mut at = fb;
        if let Some((&ps, p)) = self.map.range(..fb).next_back() {
            if let Some(e) = self.map.get(&fb) {
                if ps + p.len == fb && p.continued_by(e) {
                    let len = e.len;
                    self.map.remove(&fb);
                    if let Some(p) = self.map.get_mut(&ps) {
                        p.len += len;
                    }
                    at = ps;
                }
            }
        }
        let Some(e) = self.map.get(&at).copied() else {
            return;
        };
        if let Some(n) = self.map.get(&(at + e.len)).copied() {
            if e.continued_by(&n) {
                self.map.remove(&(at + e.len));
                if let Some(x) = self.map.get_mut(&at) {
                    x.len += n.len;
                }
            }
        }
    }

    /// Maps `[fb, fb + e.len)`, which must be a hole.
    pub(crate) fn insert(&mut self, fb: u64, e: Extent) {
        debug_assert!(e.len > 0 && !self.any_in(fb, e.len));
        self.blocks += e.len;
        self.map.insert(fb, e);
        self.merge_at(fb);
    }

    /// Unmaps `[fb, fb + n)`; returns what was there, clipped, in file order.
    pub(crate) fn remove(&mut self, fb: u64, n: u64) -> Vec<(u64, Extent)> {
        let end = fb.saturating_add(n);
        self.split_at(fb);
        self.split_at(end);
        let keys: Vec<u64> = self.map.range(fb..end).map(|(&k, _)| k).collect();
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            if let Some(e) = self.map.remove(&k) {
                self.blocks -= e.len;
                out.push((k, e));
            }
        }
        out
    }

    /// Unmaps everything; returns what was there.
    pub(crate) fn take(&mut self) -> Vec<(u64, Extent)> {
        self.blocks = 0;
        std::mem::take(&mut self.map).into_iter().collect()
    }

    /// Applies `f` to the state of every block of `[fb, fb + n)`, all of
    /// which must be mapped; else changes nothing and returns the first hole.
    pub(crate) fn update(&mut self, fb: u64, n: u64, f: impl Fn(&mut Extent)) -> Result<(), u64> {
        let end = fb.saturating_add(n);
        let mut at = fb;
        while at < end {
            match self.find(at) {
                Some((s, e)) => at = s + e.len,
                None => return Err(at),
            }
        }
        self.split_at(fb);
        self.split_at(end);
        let keys: Vec<u64> = self.map.range(fb..end).map(|(&k, _)| k).collect();
        for &k in &keys {
            if let Some(e) = self.map.get_mut(&k) {
                f(e);
            }
        }
        // Merge from the last so earlier keys stay valid.
        if let Some(&last) = keys.last() {
            if let Some(e) = self.map.get(&last).copied() {
                if self.map.contains_key(&(last + e.len)) {
                    self.merge_at(last + e.len);
                }
            }
        }
        for &k in keys.iter().rev() {
            self.merge_at(k);
        }
        Ok(())
    }
}

/// `e` at `s` clipped to `[fb, end)`.
fn clip(s: u64, e: Extent, fb: u64, end: u64) -> (u64, Extent) {
    let from = s.max(fb);
    let to = (s + e.len).min(end);
    (
        from,
        Extent {
            len: to - from,
            dev: e.dev + (from - s),
            ..e
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(len: u64, dev: u64) -> Extent {
        Extent {
            len,
            dev,
            unwritten: false,
            shared: false,
        }
    }

    /// The map as one entry per block, to compare with a per-block model.
    fn per_block(m: &ExtentMap) -> Vec<(u64, u64, bool, bool)> {
        m.iter()
            .flat_map(|(s, e)| (0..e.len).map(move |i| (s + i, e.dev + i, e.unwritten, e.shared)))
            .collect()
    }

    #[test]
    fn neighbours_merge_and_splits_keep_every_block() {
        let mut m = ExtentMap::default();
        m.insert(0, ext(4, 100));
        m.insert(4, ext(4, 104));
        assert_eq!(m.iter().count(), 1, "contiguous runs merge");
        m.insert(8, ext(2, 50));
        assert_eq!(m.iter().count(), 2, "a jump in data blocks does not merge");
        assert_eq!(m.blocks(), 10);
        let gone = m.remove(2, 7);
        assert_eq!(gone, vec![(2, ext(6, 102)), (8, ext(1, 50))]);
        assert_eq!(
            per_block(&m),
            vec![
                (0, 100, false, false),
                (1, 101, false, false),
                (9, 51, false, false)
            ]
        );
        assert_eq!(m.blocks(), 3);
        assert_eq!(m.find(1), Some((0, ext(2, 100))));
        assert_eq!(m.find(2), None);
        assert_eq!(m.next_mapped(2), Some(9));
        assert_eq!(m.last_block(), Some(9));
    }

    #[test]
    fn update_refuses_holes_and_remerges() {
        let mut m = ExtentMap::default();
        m.insert(
            0,
            Extent {
                unwritten: true,
                ..ext(8, 10)
            },
        );
        assert_eq!(m.update(6, 4, |e| e.unwritten = false), Err(8));
        assert_eq!(m.iter().count(), 1, "a refused update changes nothing");
        m.update(2, 2, |e| e.unwritten = false).unwrap();
        assert_eq!(m.iter().count(), 3);
        m.update(0, 8, |e| e.unwritten = false).unwrap();
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![(0, ext(8, 10))]);
    }
}
