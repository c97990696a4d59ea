# A zoned namespace written through vfio-pci reads back identically through the
# kernel's zoned block device, and the other way round. Ours: zone 0 written with
# sequential writes (nvme-e2e-device write-blocks, several commands) then filled to
# its end with Zone Appends, each of which must land at the write pointer (the zone
# is then Full); zone 3 with appends only; zone 5 with a write then appends. Refused:
# a write off the write pointer (the device's Zone Invalid Write, by name) and an
# append above the Zone Append Size Limit (before it reaches the device). The
# kernel reads each zone with O_DIRECT and compares; then the kernel writes zone 8
# sequentially (O_DIRECT at the write pointer) and our driver reads it back.
set -eu
. "$(dirname "$0")/../lib.sh"
dev=$(need_bin nvme-e2e-device)
bdf=$(bdf_of 2)
nsid=2
lbs=$(ns_prop 2 $nsid lbs)
zone_mib=$(ns_prop 2 $nsid zoned.zone_size)
zone_bytes=$((${zone_mib%M} * 1048576))
zone_blocks=$((zone_bytes / lbs))

bind_vfio "$bdf" >/dev/null
# Zone 0: 3/4 of it in sequential writes, the rest in appends of 16 blocks.
head -c $((zone_bytes * 3 / 4)) /dev/urandom >/tmp/z0-seq
head -c $((zone_bytes / 4)) /dev/urandom >/tmp/z0-app
"$dev" "$bdf" write-blocks $nsid 0 /tmp/z0-seq >/tmp/z0-seq.out || fail "sequential writes to zone 0 failed"
log "zone 0: sequential writes in $(sed -n 's/^commands=//p' /tmp/z0-seq.out) commands"
"$dev" "$bdf" zone-append $nsid 0 /tmp/z0-app 16 >/tmp/z0-app.out || fail "appends to zone 0 failed: $(cat /tmp/z0-app.out)"
log "zone 0: $(grep -c appended_lba /tmp/z0-app.out) appends, then $(grep zone_ /tmp/z0-app.out | tr '\n' ' ')"
grep -qx "zone_state=Full" /tmp/z0-app.out || grep -q "zone_state=.*[Ff]ull" /tmp/z0-app.out ||
    fail "zone 0 written to its capacity is not Full: $(grep zone_ /tmp/z0-app.out | tr '\n' ' ')"
cat /tmp/z0-seq /tmp/z0-app >/tmp/z0

# Zone 3: appends only (8 blocks each); zone 5: a write, then appends.
z3=$((3 * zone_blocks)) z5=$((5 * zone_blocks))
head -c $((96 * lbs)) /dev/urandom >/tmp/z3
"$dev" "$bdf" zone-append $nsid $z3 /tmp/z3 8 >/tmp/z3.out || fail "appends to zone 3 failed: $(cat /tmp/z3.out)"
grep -qx "zone_wp=$((z3 + 96))" /tmp/z3.out || fail "zone 3's write pointer after 96 appended blocks: $(grep zone_ /tmp/z3.out | tr '\n' ' ')"
head -c $((40 * lbs)) /dev/urandom >/tmp/z5-seq
head -c $((24 * lbs)) /dev/urandom >/tmp/z5-app
"$dev" "$bdf" write-blocks $nsid $z5 /tmp/z5-seq >/dev/null || fail "the write to zone 5 failed"
"$dev" "$bdf" zone-append $nsid $z5 /tmp/z5-app 24 >/tmp/z5.out || fail "the append to zone 5 failed: $(cat /tmp/z5.out)"
grep -qx "appended_lba=$((z5 + 40))" /tmp/z5.out || fail "zone 5's append did not land at LBA $((z5 + 40)): $(cat /tmp/z5.out)"
cat /tmp/z5-seq /tmp/z5-app >/tmp/z5

# Refusals: a write off the write pointer, an append above ZASL.
head -c $((4 * lbs)) /dev/urandom >/tmp/zsmall
if "$dev" "$bdf" write-blocks $nsid $((z3 + 200)) /tmp/zsmall >/dev/null 2>/tmp/zoff.err; then
    fail "a write at LBA $((z3 + 200)), off zone 3's write pointer $((z3 + 96)), succeeded"
fi
grep -qi "zone invalid write" /tmp/zoff.err || fail "the write off the write pointer failed without naming Zone Invalid Write: $(cat /tmp/zoff.err)"
log "off the write pointer: $(cat /tmp/zoff.err)"
zasl=$(conf_of 2 zoned.zasl)
if [ -n "$zasl" ] && [ "$zasl" != 0 ]; then
    over=$(((4096 << zasl) / lbs + 1))
    head -c $((over * lbs)) /dev/urandom >/tmp/zover
    if "$dev" "$bdf" zone-append $nsid $((6 * zone_blocks)) /tmp/zover $over >/tmp/zover.out 2>/tmp/zover.err; then
        fail "an append of $over blocks, above the Zone Append Size Limit, succeeded"
    fi
    grep -q "Zone Append Size Limit" /tmp/zover.err || fail "the append above ZASL failed for another reason: $(cat /tmp/zover.err)"
    grep -q appended_lba /tmp/zover.out && fail "the append above ZASL reached the device"
    log "above ZASL: $(cat /tmp/zover.err)"
fi

ctrl=$(bind_nvme "$bdf")
blk=/dev/${ctrl}n$nsid
wait_for test -b "$blk" || fail "$blk did not appear"
failed=0
for z in 0 3 5; do
    bytes=$(stat -c %s /tmp/z$z)
    dd if="$blk" of=/tmp/zk$z bs=$lbs skip=$((z * zone_blocks)) count=$((bytes / lbs)) iflag=direct status=none ||
        fail "the kernel cannot read zone $z"
    if cmp -s /tmp/zk$z /tmp/z$z; then
        log "zone $z: the kernel reads the $bytes bytes our driver wrote"
    else
        log "FAIL zone $z: the kernel reads other bytes than our driver wrote"
        failed=$((failed + 1))
    fi
done
# The kernel writes 128 KiB at zone 8's write pointer (its start).
z8=$((8 * zone_blocks))
head -c 131072 /dev/urandom >/tmp/z8
dd if=/tmp/z8 of="$blk" bs=65536 seek=$((z8 * lbs / 65536)) count=2 oflag=direct status=none ||
    fail "the kernel's sequential O_DIRECT write to zone 8 failed: $(dmesg | tail -n 3)"
bind_vfio "$bdf" >/dev/null
"$dev" "$bdf" read-blocks $nsid $z8 $((131072 / lbs)) /tmp/zo8 >/dev/null || fail "our read of zone 8 failed"
if cmp -s /tmp/zo8 /tmp/z8; then
    log "zone 8: our driver reads the 131072 bytes the kernel wrote"
else
    log "FAIL zone 8: our driver reads other bytes than the kernel wrote"
    failed=$((failed + 1))
fi
[ "$failed" -eq 0 ] || fail "$failed zones read back differently"
