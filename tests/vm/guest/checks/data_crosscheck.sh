# Check 2: bytes cross-checked both ways between our driver and the kernel
# driver on controller 0, namespace 1 (512-byte LBAs) and namespace 2
# (4096-byte LBAs): what nvme-dio writes through vfio-pci, the kernel reads
# with O_DIRECT, and what the kernel writes with O_DIRECT, nvme-dio reads
# (SHA-256 of 1 MiB each way).
set -eu
. "$(dirname "$0")/../lib.sh"
bdf=$(bdf_of 0)
dio=$(need_bin nvme-dio)

for ns in 1 2; do
    ours=/tmp/ours-$ns kern=/tmp/kern-$ns
    head -c 1048576 /dev/urandom >$ours
    head -c 1048576 /dev/urandom >$kern
    # Ours at 2 MiB, the kernel's at 5 MiB (both multiples of either LBA size).
    bind_vfio "$bdf" >/dev/null
    "$dio" --ns $ns "$bdf" write --offset 2097152 --input $ours >/dev/null ||
        fail "nvme-dio write to ns $ns failed"
    ctrl=$(bind_nvme "$bdf")
    dd if="/dev/${ctrl}n$ns" of=/tmp/kread-$ns bs=1M skip=2 count=1 iflag=direct status=none
    [ "$(sha256sum </tmp/kread-$ns)" = "$(sha256sum <$ours)" ] ||
        fail "ns $ns: the kernel reads other bytes than nvme-dio wrote at 2 MiB"
    dd if=$kern of="/dev/${ctrl}n$ns" bs=1M seek=5 count=1 oflag=direct status=none
    bind_vfio "$bdf" >/dev/null
    "$dio" --ns $ns "$bdf" read --offset 5242880 --length 1048576 --output /tmp/oread-$ns >/dev/null ||
        fail "nvme-dio read from ns $ns failed"
    [ "$(sha256sum </tmp/oread-$ns)" = "$(sha256sum <$kern)" ] ||
        fail "ns $ns: nvme-dio reads other bytes than the kernel wrote at 5 MiB"
    log "ns $ns: 1 MiB each way, checksums equal"
done
