# The direct-I/O layer through vfio-pci on the formats controller: nvme-dio's compare
# has the device compare (NVMe Compare: a match exits 0, a difference exits 1 naming
# the byte range); on a namespace whose metadata is only protection information
# (namespace 6: 512+8, type 1, extended; namespace 5: 4096+8, type 1, separate) writes
# and reads run with PRACT and files hold data only, the kernel driver reads back what
# dio wrote, and QEMU's refusal of Compare with PRACT arrives by name; on a metadata format without protection information (namespace 2) dio
# refuses before any I/O, saying why. QEMU offers no fused Compare and Write (FUSES 0,
# compared with nvme-cli by formats_identify_matches_nvme_cli).
set -eu
. "$(dirname "$0")/../lib.sh"
dio=$(need_bin nvme-dio)
bdf=$(bdf_of 0)

bind_vfio "$bdf" >/dev/null
head -c 65536 /dev/urandom >/tmp/fdio.in
failed=0
# The plain namespace: written, compared equal by the device, read back; then compared
# against other bytes, which the device reports as a miscompare.
if ! "$dio" --ns 1 "$bdf" write --offset 1M --input /tmp/fdio.in --dsync \
    + compare --offset 1M --input /tmp/fdio.in \
    + read --offset 1M --length 64k --output /tmp/fdio-1.out >/tmp/fdio-1.log 2>&1; then
    log "FAIL ns 1: write, compare and read through dio failed: $(cat /tmp/fdio-1.log)"
    failed=$((failed + 1))
elif ! cmp -s /tmp/fdio.in /tmp/fdio-1.out; then
    log "FAIL ns 1: dio reads back other bytes than it wrote"
    failed=$((failed + 1))
else
    status=0
    "$dio" --ns 1 "$bdf" compare --offset 1M --pattern 7 --length 64k \
        >/dev/null 2>/tmp/fdio-1.err || status=$?
    if [ "$status" -ne 1 ] || ! grep -q "differs" /tmp/fdio-1.err; then
        log "FAIL ns 1: a differing compare exited $status: $(cat /tmp/fdio-1.err)"
        failed=$((failed + 1))
    else
        log "ns 1: dio write, device compare (match and mismatch) and read: ok; $(cat /tmp/fdio-1.err)"
    fi
fi

# Protection-only namespaces: writes and reads run with PRACT. QEMU 7.2 does not
# implement Compare with PRACT (it fails it with Invalid Protection Information, where
# the NVM Command Set lets the controller compare the data and check the stored
# protection information): the refusal must reach the caller by its name, never as a
# miscompare.
for nsid in 5 6; do
    if ! "$dio" --ns "$nsid" "$bdf" write --offset 1M --input /tmp/fdio.in --dsync \
        + read --offset 1M --length 64k --output /tmp/fdio-$nsid.out >/tmp/fdio-$nsid.log 2>&1; then
        log "FAIL ns $nsid: write and read through dio with PRACT failed: $(cat /tmp/fdio-$nsid.log)"
        failed=$((failed + 1))
        continue
    fi
    cmp -s /tmp/fdio.in /tmp/fdio-$nsid.out || {
        log "FAIL ns $nsid: dio reads back other bytes than it wrote"
        failed=$((failed + 1))
    }
    status=0
    "$dio" --ns "$nsid" "$bdf" compare --offset 1M --input /tmp/fdio.in \
        >/dev/null 2>/tmp/fdio-$nsid.err || status=$?
    if [ "$status" -eq 0 ]; then
        log "FAIL ns $nsid: the device compared with PRACT; QEMU 7.2 refuses it: update this check"
        failed=$((failed + 1))
    elif ! grep -q "Invalid Protection Information" /tmp/fdio-$nsid.err; then
        log "FAIL ns $nsid: compare with PRACT exited $status: $(cat /tmp/fdio-$nsid.err)"
        failed=$((failed + 1))
    else
        log "ns $nsid: dio write and read with PRACT: ok; compare refused by QEMU: $(cat /tmp/fdio-$nsid.err)"
    fi
done

# Extended LBAs without protection information: refused before any I/O.
status=0
"$dio" --ns 2 "$bdf" write --offset 0 --input /tmp/fdio.in >/dev/null 2>/tmp/fdio-2.err || status=$?
if [ "$status" -eq 0 ] || ! grep -qi "metadata" /tmp/fdio-2.err; then
    log "FAIL ns 2: dio on 512+8 extended LBAs exited $status: $(cat /tmp/fdio-2.err)"
    failed=$((failed + 1))
else
    log "ns 2: refused: $(cat /tmp/fdio-2.err)"
fi

# The kernel driver reads what dio wrote with PRACT (it checks type 1 reference tags).
ctrl=$(bind_nvme "$bdf")
for nsid in 5 6; do
    wait_for test -e "/dev/${ctrl}n$nsid" || fail "/dev/${ctrl}n$nsid did not appear"
    if ! dd if="/dev/${ctrl}n$nsid" of=/tmp/fdio-k$nsid bs=64k skip=16 count=1 iflag=direct status=none; then
        log "FAIL ns $nsid: the kernel cannot read what dio wrote; dmesg: $(dmesg | tail -n 3)"
        failed=$((failed + 1))
    elif ! cmp -s /tmp/fdio.in /tmp/fdio-k$nsid; then
        log "FAIL ns $nsid: the kernel reads other bytes than dio wrote"
        failed=$((failed + 1))
    else
        log "ns $nsid: the kernel reads the 64 KiB dio wrote"
    fi
done
bind_vfio "$bdf" >/dev/null
[ $failed -eq 0 ] || fail "direct I/O on the formats controller failed in $failed cases (see above)"
