# Check 6: a controller reset and the shutdown at the end leave the device
# usable: data written before a reset reads back after it, and the kernel
# nvme driver then binds and reads the same bytes.
set -eu
. "$(dirname "$0")/../lib.sh"
bdf=$(bdf_of 0)
tool=$(need_bin nvme-e2e-device)

head -c 131072 /dev/urandom >/tmp/pattern
bind_vfio "$bdf" >/dev/null
"$tool" "$bdf" reset-roundtrip /tmp/pattern 8192 || fail "reset round trip failed"
ctrl=$(bind_nvme "$bdf")
dd if="/dev/${ctrl}n1" of=/tmp/back bs=128k skip=32 count=1 iflag=direct status=none
cmp /tmp/pattern /tmp/back || fail "after reset and shutdown the kernel reads other bytes at LBA 8192"
log "kernel driver reads LBA 8192 intact after our reset and shutdown"
