//! Steps on a zoned namespace: every write is checked against the zone report taken
//! before the script runs, so a write that is not at its zone's write pointer is
//! refused before any I/O (the device would fail it with Zone Invalid Write).

use nvme::spec::zns::ZoneState;
use nvme::zns::Zone;

use super::args::Step;
use crate::cli::ToolError;

/// Checks `steps` against `zones` (every zone of the namespace, in order, each
/// `zone_blocks` blocks of `lba_bytes` bytes), following the write pointers the
/// script's own writes move. Reads and compares go anywhere; extent-layer files and
/// writes off a write pointer are refused with what to do instead.
pub fn check_steps(
    steps: &[Step],
    zones: &[Zone],
    zone_blocks: u64,
    lba_bytes: u64,
) -> Result<(), ToolError> {
    let mut zones = zones.to_vec();
    for (i, step) in steps.iter().enumerate() {
        let n = i + 1;
        if step.file().is_some() {
            return Err(ToolError::Invalid(format!(
                "step {n} ({}): the extent layer writes anywhere in the namespace, but a zoned namespace takes writes only at each zone's write pointer; use raw steps (without --file)",
                step.name()
            )));
        }
        let Step::Write { offset, input, .. } = step else {
            continue;
        };
        let len = std::fs::metadata(input).map(|m| m.len()).unwrap_or(0);
        if lba_bytes == 0 || offset % lba_bytes != 0 || len % lba_bytes != 0 || len == 0 {
            // The step's own checks name a misaligned or empty write.
            continue;
        }
        let lba = offset / lba_bytes;
        let blocks = len / lba_bytes;
        let Some(zone) = zones.get_mut((lba / zone_blocks.max(1)) as usize) else {
            continue;
        };
        let at = |lba: u64| format!("LBA {lba:#x} (offset {})", lba * lba_bytes);
        let refuse = |why: String| {
            ToolError::Invalid(format!(
                "step {n} (write) at {}: {why}; a zoned namespace takes writes only at a zone's write pointer (nvme-zns DEVICE report shows them; nvme-zns DEVICE reset --zone ZSLBA empties a zone)",
                at(lba)
            ))
        };
        match zone.state {
            ZoneState::Full | ZoneState::ReadOnly | ZoneState::Offline => {
                return Err(refuse(format!(
                    "the zone at LBA {:#x} is {}, not writable",
                    zone.zslba,
                    crate::zns::model::state_name(zone.state)
                )))
            }
            _ => {}
        }
        if lba != zone.wp {
            return Err(refuse(format!(
                "it is not at the write pointer of the zone at LBA {:#x}, which is at {}",
                zone.zslba,
                at(zone.wp)
            )));
        }
        let end = zone.zslba + zone.zcap;
        if lba + blocks > end {
            return Err(refuse(format!(
                "its {blocks} blocks go past the zone's writable capacity, which ends at {}",
                at(end)
            )));
        }
        zone.wp = lba + blocks;
        zone.state = if zone.wp == end {
            ZoneState::Full
        } else {
            ZoneState::ImplicitlyOpened
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nvme::spec::zns::ZoneAttributes;

    fn zones() -> Vec<Zone> {
        (0..4)
            .map(|i| Zone {
                zslba: i * 16,
                wp: i * 16 + if i == 1 { 4 } else { 0 },
                zcap: 12,
                state: if i == 1 {
                    ZoneState::Closed
                } else if i == 3 {
                    ZoneState::Full
                } else {
                    ZoneState::Empty
                },
                zone_type: 2,
                attrs: ZoneAttributes::new(),
                attrs_info: 0,
            })
            .collect()
    }

    fn write(offset: u64, input: &std::path::Path) -> Step {
        Step::Write {
            offset,
            input: input.to_path_buf(),
            dsync: false,
            sync: false,
            hipri: false,
            file: None,
        }
    }

    #[test]
    fn writes_follow_the_write_pointers_the_script_moves() {
        let dir = tempfile::tempdir().unwrap();
        let four = dir.path().join("four");
        std::fs::write(&four, [0u8; 4 * 512]).unwrap();
        let ok = |steps: &[Step]| check_steps(steps, &zones(), 16, 512);
        // Zone 0 at its start, twice in a row; zone 1 at its write pointer.
        ok(&[
            write(0, &four),
            write(4 * 512, &four),
            write(20 * 512, &four),
        ])
        .unwrap();
        // Off the write pointer, named with where it is.
        let e = ok(&[write(4 * 512, &four)]).unwrap_err().to_string();
        assert!(
            e.contains("zone at LBA 0x0, which is at LBA 0x0 (offset 0)"),
            "{e}"
        );
        let e = ok(&[write(0, &four), write(0, &four)])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("step 2 (write) at LBA 0x0"), "{e}");
        // Past the capacity (12 blocks of 16), and into a full zone.
        let e = ok(&[
            write(0, &four),
            write(4 * 512, &four),
            write(8 * 512, &four),
            write(12 * 512, &four),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("FULL"), "{e}");
        let e = ok(&[write(48 * 512, &four)]).unwrap_err().to_string();
        assert!(e.contains("FULL, not writable"), "{e}");
        let e = ok(&[write(24 * 512, &four), write(28 * 512, &four)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("not at the write pointer"), "{e}");
        let eight = dir.path().join("eight");
        std::fs::write(&eight, [0u8; 16 * 512]).unwrap();
        let e = ok(&[write(32 * 512, &eight)]).unwrap_err().to_string();
        assert!(e.contains("past the zone's writable capacity"), "{e}");
        // Extent-layer files are refused.
        let mut with_file = write(0, &four);
        if let Step::Write { file, .. } = &mut with_file {
            *file = Some("a".into());
        }
        assert!(ok(&[with_file])
            .unwrap_err()
            .to_string()
            .contains("without --file"));
    }
}
