//! The buffer iterator.

use super::*;

#[test]
fn iov_iter_advance_revert_truncate_and_reexpand_round_trip_within_the_buffers() {
    let dev = FakeDev::new(caps(512, true, true));
    let mut it = IovIter::new(vec![dev.buf(1024), dev.buf(0), dev.buf(2048)]);
    assert_eq!(it.count(), 3072);
    it.advance(1536);
    assert_eq!(
        it.chunks().next(),
        Some(Chunk {
            index: 2,
            offset: 512,
            len: 1536
        })
    );
    it.truncate(1024);
    assert_eq!(it.count(), 1024);
    assert_eq!(it.chunks().map(|c| c.len).sum::<usize>(), 1024);
    it.reexpand(1536);
    assert_eq!(it.count(), 1536);
    it.revert(1536);
    assert_eq!((it.consumed(), it.count()), (0, 3072));
    assert_eq!(
        it.chunks().next(),
        Some(Chunk {
            index: 0,
            offset: 0,
            len: 1024
        })
    );
    it.advance(1024);
    it.revert(512);
    assert_eq!(
        it.chunks().next(),
        Some(Chunk {
            index: 0,
            offset: 512,
            len: 512
        })
    );
    // Re-expanding never goes past the bytes the buffers hold.
    it.reexpand(1 << 20);
    assert_eq!(it.count(), 3072 - 512);
}
