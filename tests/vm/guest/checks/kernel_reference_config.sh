# The guest's controllers are what the harness was asked for, seen by the
# kernel driver: controller 0's namespace 2 has the configured LBA size and
# size; controller 1 reports the configured MDTS and the kernel caps its
# transfers to 2^MDTS * 4 KiB.
set -eu
. "$(dirname "$0")/../lib.sh"

c0=$(bind_nvme "$(bdf_of 0)")
lba=$(conf_of 0 ns2)
[ -n "$lba" ] || fail "controller 0 was configured without namespace 2"
nvme id-ns "/dev/${c0}n2" -o json >/tmp/ns2.json
ds=$(json_get /tmp/ns2.json 'j["lbafs"][j["flbas"] & 0xf]["ds"]')
[ $((1 << ds)) -eq "$lba" ] || fail "namespace 2 has $((1 << ds))-byte LBAs, expected $lba"
nsze=$(json_get /tmp/ns2.json 'j["nsze"]')
want=$(($(conf_of 0 ns2size) * 1048576 / lba))
[ "$nsze" -eq "$want" ] || fail "namespace 2 has $nsze LBAs, expected $want"
log "${c0}n2: $nsze LBAs of $lba bytes"

mdts=$(conf_of 1 mdts)
[ -n "$mdts" ] || fail "controller 1 was configured without mdts"
c1=$(bind_nvme "$(bdf_of 1)")
got=$(nvme id-ctrl "/dev/$c1" -o json | json_get - 'j["mdts"]')
[ "$got" -eq "$mdts" ] || fail "controller 1 reports mdts $got, expected $mdts"
kb=$(cat "/sys/block/${c1}n1/queue/max_hw_sectors_kb")
[ "$kb" -eq $(((1 << mdts) * 4)) ] || fail "kernel caps ${c1}n1 transfers at $kb KiB, expected $(((1 << mdts) * 4))"
log "$c1: mdts $got, kernel max transfer $kb KiB"
