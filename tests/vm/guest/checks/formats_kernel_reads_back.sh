# Bytes cross-checked both ways between our driver and the Linux driver on every
# metadata namespace the kernel exposes as a block device (at least every one with
# protection information that is the whole metadata, 8-byte or 16-byte tuple, which it drives with
# PRACT or its integrity profile): 256 KiB that nvme-e2e-device writes through
# vfio-pci (PRACT where the protection information is the whole metadata, so the
# controller inserts it; otherwise with a separate metadata buffer) the kernel reads
# with O_DIRECT, checking the protection information itself where it registered a
# T10 profile; 256 KiB the kernel writes, our driver reads. Both at LBAs other than
# 0, where reference tags must be the LBA. Prints which formats the kernel exposes.
set -eu
. "$(dirname "$0")/../lib.sh"
dev=$(need_bin nvme-e2e-device)
bdf=$(bdf_of 0)

ctrl=$(bind_nvme "$bdf")
rows=""
for nsid in $(ns_ids 0); do
    blk=${ctrl}n$nsid
    wait_for test -e "/sys/block/$blk/size" || fail "/dev/$blk did not appear"
    lbs=$(ns_prop 0 "$nsid" lbs) ms=$(ns_prop 0 "$nsid" ms) mset=$(ns_prop 0 "$nsid" mset) pi=$(ns_prop 0 "$nsid" pi)
    # The tuple: 8 bytes with the 16-bit guard, 16 with the 64-bit one (pif=2).
    tuple=8
    [ "$(ns_prop 0 "$nsid" pif)" = 2 ] && tuple=16
    sectors=$(cat "/sys/block/$blk/size")
    integrity=$(cat "/sys/block/$blk/integrity/format" 2>/dev/null || echo none)
    log "ns $nsid $lbs+$ms mset=$mset pi=$pi: kernel capacity $sectors sectors, integrity $integrity"
    if [ "$pi" != 0 ] && [ "$ms" = "$tuple" ] && [ "$sectors" -eq 0 ]; then
        fail "the kernel does not expose ns $nsid (protection information type $pi in $tuple-byte metadata)"
    fi
    [ "$sectors" -gt 0 ] || continue
    mode=""
    [ "$pi" != 0 ] && [ "$ms" = "$tuple" ] && mode=pract
    rows="$rows $nsid:$lbs:$mode"
done
[ -n "$rows" ] || fail "the kernel exposes none of the metadata namespaces"

# Three phases, two driver switches: ours write, the kernel reads and writes, ours read.
failed=0
bind_vfio "$bdf" >/dev/null
for row in $rows; do
    IFS=: read -r nsid lbs mode <<EOF2
$row
EOF2
    head -c 262144 /dev/urandom >/tmp/fours-$nsid
    head -c 262144 /dev/urandom >/tmp/fkern-$nsid
    # Ours at 2 MiB, the kernel's at 5 MiB.
    # shellcheck disable=SC2086
    "$dev" "$bdf" write-blocks "$nsid" $((2097152 / lbs)) /tmp/fours-$nsid $mode >/dev/null ||
        fail "ns $nsid: nvme-e2e-device write-blocks ${mode:-(metadata buffer)} failed"
done
ctrl=$(bind_nvme "$bdf")
for row in $rows; do
    IFS=: read -r nsid lbs mode <<EOF2
$row
EOF2
    if ! dd if="/dev/${ctrl}n$nsid" of=/tmp/fkread-$nsid bs=256k skip=8 count=1 iflag=direct status=none; then
        log "FAIL ns $nsid: the kernel cannot read what our driver wrote (${mode:-metadata buffer}); dmesg: $(dmesg | tail -n 3)"
        failed=$((failed + 1))
    elif ! cmp -s /tmp/fkread-$nsid /tmp/fours-$nsid; then
        log "FAIL ns $nsid: the kernel reads other bytes than our driver wrote"
        failed=$((failed + 1))
    else
        log "ns $nsid: the kernel reads the 256 KiB our driver wrote (${mode:-separate metadata buffer})"
    fi
    dd if=/tmp/fkern-$nsid of="/dev/${ctrl}n$nsid" bs=256k seek=20 count=1 oflag=direct status=none ||
        fail "ns $nsid: the kernel's O_DIRECT write failed"
done
bind_vfio "$bdf" >/dev/null
for row in $rows; do
    IFS=: read -r nsid lbs mode <<EOF2
$row
EOF2
    # shellcheck disable=SC2086
    if ! "$dev" "$bdf" read-blocks "$nsid" $((5242880 / lbs)) $((262144 / lbs)) /tmp/foread-$nsid $mode >/dev/null; then
        log "FAIL ns $nsid: nvme-e2e-device read-blocks failed"
        failed=$((failed + 1))
    elif ! cmp -s /tmp/foread-$nsid /tmp/fkern-$nsid; then
        log "FAIL ns $nsid: our driver reads other bytes than the kernel wrote"
        failed=$((failed + 1))
    else
        log "ns $nsid: our driver reads the 256 KiB the kernel wrote"
    fi
done
[ $failed -eq 0 ] || fail "$failed cross-checks failed (see above)"
