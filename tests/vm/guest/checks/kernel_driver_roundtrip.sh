# Controller 0 moves vfio-pci -> nvme within one boot and then serves the
# kernel driver: its group node exists while on vfio-pci; afterwards
# `nvme id-ctrl` reports the configured serial and O_DIRECT writes read back.
set -eu
. "$(dirname "$0")/../lib.sh"
bdf=$(bdf_of 0)
serial=$(conf_of 0 serial)

node=$(bind_vfio "$bdf")
[ -c "$node" ] || fail "$node is not a character device"
log "vfio-pci: $bdf in group node $node"

ctrl=$(bind_nvme "$bdf")
got=$(nvme id-ctrl "/dev/$ctrl" -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["sn"].strip())')
[ "$got" = "$serial" ] || fail "id-ctrl serial is '$got', expected '$serial'"
log "nvme: /dev/$ctrl serial $got"

dev=/dev/${ctrl}n1
pattern=/tmp/pattern
head -c 1048576 /dev/urandom >$pattern
dd if=$pattern of="$dev" bs=64k seek=16 oflag=direct status=none
dd if="$dev" of=/tmp/readback bs=64k skip=16 count=16 iflag=direct status=none
cmp $pattern /tmp/readback || fail "data read back from $dev differs from what was written"
log "1 MiB written and read back with O_DIRECT at offset 1 MiB"
