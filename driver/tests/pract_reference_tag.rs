//! With PRACT the controller inserts the protection information, numbering the
//! reference tags from the command's Initial Logical Block Reference Tag (CDW14): the
//! driver sets it to the first LBA, so that a reader checking reference tags (the
//! Linux driver does, with the LBA) accepts what the controller wrote.

mod common;

use std::time::Duration;

use common::*;
use nvme::spec::pi::Pi8;
use nvme::transport::emu::EmuTransport;
use nvme::{IoFlags, IoQueuePair, QueuePairOptions};

/// Queues one command with `submit` and waits for it; panics on an error.
fn run(qp: &mut IoQueuePair<EmuTransport>, submit: impl FnOnce(&mut IoQueuePair<EmuTransport>)) {
    submit(qp);
    qp.ring();
    while qp.outstanding() > 0 {
        qp.wait_completions(8, Duration::from_secs(2), |_, s| s.unwrap())
            .unwrap();
    }
}

#[test]
fn pract_write_numbers_type2_reference_tags_from_the_first_lba() {
    // Type 2 takes the tags from CDW14 (type 1 may take them from the LBA itself).
    let r = rig("size=1M,lba=512,ms=8,mset=ext,pi=2");
    let mut qp = r
        .ctrl
        .create_io_queue_pair(QueuePairOptions::default())
        .unwrap();
    let (slba, blocks) = (37u64, 4u32);
    let src = patterned(&r.ctrl, blocks as usize * 512, 5);
    run(&mut qp, |qp| {
        let seg = src.segment(0, src.len()).unwrap();
        qp.submit_write(1, slba, blocks, &[seg], IoFlags::PRACT, 0)
            .unwrap();
    });
    // Read back without PRACT: each block with the tuple the controller inserted.
    let ext = r
        .ctrl
        .allocator()
        .alloc(blocks as usize * 520, 4096)
        .unwrap();
    run(&mut qp, |qp| {
        let seg = ext.segment(0, ext.len()).unwrap();
        qp.submit_read(1, slba, blocks, &[seg], 0).unwrap();
    });
    let got = contents(&ext);
    let tags: Vec<u32> = got
        .chunks(520)
        .map(|b| Pi8::read(&b[512..]).unwrap().ref_tag.get())
        .collect();
    assert_eq!(tags, vec![37, 38, 39, 40]);
}
