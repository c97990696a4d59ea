# Check 3: random mixed reads and writes through our driver on vfio-pci, two
# queue pairs at queue depth 32, every read of a block written in the run
# verified; no I/O error, no mismatch. Afterwards the kernel driver still
# reads the namespace.
set -eu
. "$(dirname "$0")/../lib.sh"
bdf=$(bdf_of 0)
perf=$(need_bin nvme-perf)

bind_vfio "$bdf" >/dev/null
"$perf" "$bdf" -w randrw -M 50 -q 32 --qpairs 2 --verify --span 64M -t 2 --json >/tmp/perf.json ||
    fail "nvme-perf exited with status $?: $(cat /tmp/perf.json)"
cat /tmp/perf.json
for k in errors verify_failures; do
    [ "$(json_get /tmp/perf.json "j['$k']")" -eq 0 ] || fail "nvme-perf reported $k"
done
for k in reads writes verified_blocks; do
    [ "$(json_get /tmp/perf.json "j['$k']")" -gt 0 ] || fail "nvme-perf did no $k"
done
[ "$(json_get /tmp/perf.json "j['config']['qpairs']")" -eq 2 ] || fail "nvme-perf did not use 2 queue pairs"

ctrl=$(bind_nvme "$bdf")
dd if="/dev/${ctrl}n1" of=/dev/null bs=1M count=64 iflag=direct status=none ||
    fail "the kernel driver cannot read the namespace after nvme-perf"
