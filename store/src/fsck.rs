//! The checker: verifies the superblock, the checkpoints and the journal, then
//! cross-references every extent against free space and reference counts.

use std::collections::{BTreeMap, HashSet};

use dio::{DioQueue, DmaBuf};

use crate::error::StoreError;
use crate::io::StoreIo;
use crate::meta::{Image, MAX_NAME};
use crate::store::{load, lock, read_superblock, Region, Store};

/// A file's name, size and block map (file block, data block, unwritten).
type FileSummary = (String, u64, Vec<(u64, u64, bool)>);

/// What [`Store::fsck`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsckReport {
    /// Files in the store.
    pub files: u64,
    /// Data blocks referenced by files.
    pub used_blocks: u64,
    /// Free data blocks.
    pub free_blocks: u64,
    /// Data blocks referenced more than once (clones).
    pub shared_blocks: u64,
    /// The checkpoint area loaded (0 = A, 1 = B).
    pub checkpoint_area: usize,
    /// Its sequence number.
    pub checkpoint_seq: u64,
    /// Why each checkpoint area was rejected, if it was.
    pub checkpoint_rejected: [Option<&'static str>; 2],
    /// Journal transactions replayed after the checkpoint.
    pub journal_transactions: u64,
    /// Every inconsistency, as a sentence; empty when the store is clean.
    pub problems: Vec<String>,
}

impl FsckReport {
    /// Whether no inconsistency was found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks one metadata image. `transient`: data blocks neither free nor
/// referenced on purpose (staged copy-on-write blocks, frees not yet durable).
pub(crate) fn check_image(img: &Image, transient: &HashSet<u64>, report: &mut FsckReport) {
    let total = img.alloc.total;
    let p = &mut report.problems;
    let mut count = vec![0u32; total as usize];
    let mut unwritten = vec![false; total as usize];
    let mut names = HashSet::new();
    for f in img.files.values() {
        if f.name.is_empty() || f.name.len() > MAX_NAME {
            p.push(format!(
                "file {} has a name of {} bytes",
                f.id,
                f.name.len()
            ));
        }
        if !names.insert(f.name.as_str()) {
            p.push(format!(
                "the name {:?} is used by more than one file",
                f.name
            ));
        }
        if f.id >= img.next_id {
            p.push(format!(
                "file {} is numbered past the next free number {}",
                f.id, img.next_id
            ));
        }
        for (start, e) in f.blocks.iter() {
            for i in 0..e.len {
                let (fb, dev) = (start + i, e.dev + i);
                let Some(c) = count.get_mut(dev as usize) else {
                    p.push(format!(
                        "file {} block {fb} maps data block {dev} outside the data area",
                        f.id
                    ));
                    break;
                };
                *c += 1;
                if e.unwritten {
                    unwritten[dev as usize] = true;
                }
            }
        }
    }
    let mut free = vec![false; total as usize];
    let mut end = 0;
    let mut sum = 0;
    for (&s, &l) in &img.alloc.free {
        if s < end {
            p.push(format!("free runs overlap at data block {s}"));
        }
        if l == 0 || s + l > total {
            p.push(format!(
                "free run {s}+{l} is empty or outside the data area"
            ));
            continue;
        }
        end = s + l;
        sum += l;
        for d in s..s + l {
            free[d as usize] = true;
        }
    }
    if sum != img.alloc.free_blocks {
        p.push(format!(
            "free runs hold {sum} blocks but the free count says {}",
            img.alloc.free_blocks
        ));
    }
    for d in 0..total as usize {
        let c = count[d];
        if free[d] && c > 0 {
            p.push(format!(
                "data block {d} is both free and used by {c} file blocks"
            ));
        }
        if !free[d] && c == 0 && !transient.contains(&(d as u64)) {
            p.push(format!("data block {d} is neither free nor used (leaked)"));
        }
        let r = img.alloc.refs.get(&(d as u64)).copied();
        if c > 1 {
            report.shared_blocks += 1;
            if r != Some(c) {
                p.push(format!(
                    "data block {d} has {c} references but a count of {r:?}"
                ));
            }
            if unwritten[d] {
                p.push(format!("data block {d} is shared while unwritten"));
            }
        } else if let Some(r) = r {
            p.push(format!(
                "data block {d} has a reference count of {r} but {c} references"
            ));
        }
        if c > 0 {
            report.used_blocks += 1;
        }
    }
    report.free_blocks = sum;
    report.files = img.files.len() as u64;
}

impl Store {
    /// Checks the store in `region` without opening it (nothing is written):
    /// superblock, checkpoints, journal replay, then every structure.
    pub fn check<Q: DioQueue, B: DmaBuf>(
        io: &mut StoreIo<Q, B>,
        region: Region,
    ) -> Result<FsckReport, StoreError> {
        let sb = read_superblock(io, region)?;
        let loaded = load(io, &sb)?;
        let mut report = FsckReport {
            checkpoint_area: loaded.area,
            checkpoint_seq: loaded.checkpoint_seq,
            checkpoint_rejected: loaded.rejected,
            journal_transactions: loaded.transactions,
            ..FsckReport::default()
        };
        check_image(&loaded.image, &HashSet::new(), &mut report);
        Ok(report)
    }

    /// Commits, then checks what is on the device (as [`Store::check`]) and
    /// that the metadata in memory is consistent and equal to it.
    pub fn fsck<Q: DioQueue, B: DmaBuf>(
        &self,
        io: &mut StoreIo<Q, B>,
    ) -> Result<FsckReport, StoreError> {
        self.sync(io)?;
        let region = Region {
            offset: self.geo.base,
            len: self.geo.total_blocks * u64::from(self.geo.block_size),
        };
        let sb = read_superblock(io, region)?;
        let mut report = Store::check(io, region)?;
        if sb != self.sb {
            report
                .problems
                .push("the superblock on the device differs from the one opened".into());
        }
        let disk = load(io, &sb)?.image;
        let live = self.live_image();
        let mut transient: HashSet<u64> = lock(&self.alloc).busy.iter().map(|&(_, d)| d).collect();
        for n in lock(&self.names).values() {
            transient.extend(lock(&n.meta).cow.values().copied());
        }
        let mut live_report = FsckReport::default();
        check_image(&live, &transient, &mut live_report);
        for e in live_report.problems {
            report.problems.push(format!("in memory: {e}"));
        }
        let summary = |img: &Image| -> BTreeMap<u64, FileSummary> {
            img.files
                .values()
                .map(|f| {
                    let map = f
                        .blocks
                        .iter()
                        .flat_map(|(k, e)| (0..e.len).map(move |i| (k + i, e.dev + i, e.unwritten)))
                        .collect();
                    (f.id, (f.name.clone(), f.size, map))
                })
                .collect()
        };
        if summary(&disk) != summary(&live) {
            report.problems.push(
                "the committed metadata on the device differs from the metadata in memory".into(),
            );
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::Record;

    /// Two files: "a" with data blocks 0..2 written, "b" sharing block 0.
    fn image() -> Image {
        let mut img = Image::empty(16);
        for (id, name) in [(1, "a"), (2, "b")] {
            let rec = Record::Create {
                id,
                name: name.into(),
                time: 0,
            };
            img.replay(&rec).unwrap();
        }
        for rec in [
            Record::Alloc {
                id: 1,
                fb: 0,
                dev: 0,
                n: 2,
            },
            Record::Convert { id: 1, fb: 0, n: 2 },
            Record::Clone {
                src: 1,
                sfb: 0,
                dst: 2,
                dfb: 0,
                n: 1,
            },
        ] {
            img.replay(&rec).unwrap();
        }
        img
    }

    fn problems(img: &Image) -> Vec<String> {
        let mut r = FsckReport::default();
        check_image(img, &HashSet::new(), &mut r);
        r.problems
    }

    fn has(p: &[String], what: &str) -> bool {
        p.iter().any(|e| e.contains(what))
    }

    #[test]
    fn a_consistent_image_is_clean() {
        assert_eq!(problems(&image()), Vec::<String>::new());
    }

    #[test]
    fn a_mapped_block_that_is_also_free_is_reported() {
        let mut img = image();
        img.alloc.release(1, 1);
        let p = problems(&img);
        assert!(has(&p, "data block 1 is both free and used"), "{p:?}");
    }

    #[test]
    fn a_reference_count_off_by_one_is_reported() {
        let mut img = image();
        img.alloc.refs.insert(0, 3);
        let p = problems(&img);
        assert!(
            has(&p, "data block 0 has 2 references but a count of Some(3)"),
            "{p:?}"
        );
        let mut img = image();
        img.alloc.refs.insert(1, 2);
        let p = problems(&img);
        assert!(
            has(
                &p,
                "data block 1 has a reference count of 2 but 1 references"
            ),
            "{p:?}"
        );
    }

    #[test]
    fn two_files_with_one_name_are_reported() {
        let mut img = image();
        if let Some(f) = img.files.get_mut(&2) {
            f.name = "a".into();
        }
        let p = problems(&img);
        assert!(
            has(&p, "the name \"a\" is used by more than one file"),
            "{p:?}"
        );
    }

    #[test]
    fn an_extent_past_the_data_area_is_reported() {
        let mut img = image();
        // The same maps on a data area too small for them.
        img.alloc.total = 1;
        img.alloc.free.clear();
        img.alloc.free_blocks = 0;
        let p = problems(&img);
        assert!(has(&p, "maps data block 1 outside the data area"), "{p:?}");
    }

    #[test]
    fn a_leaked_block_and_a_wrong_free_count_are_reported() {
        let mut img = image();
        img.alloc.take(5, 1).unwrap();
        img.alloc.free_blocks += 3;
        let p = problems(&img);
        assert!(has(&p, "data block 5 is neither free nor used"), "{p:?}");
        assert!(has(&p, "but the free count says"), "{p:?}");
    }
}
