# Crash-safe restart, nvme-perf: a verified random read/write run at queue depth
# 32 is killed with SIGKILL in the middle. The next open of the controller
# (our bring-up disables a controller left enabled; vfio-pci resets the function
# when the dead process's device file closes) works; every block of the area
# is then a whole block of the pattern for its LBA, the pre-fill's or a newer
# one, never torn; some blocks did change; a new verified run works; the kernel
# driver takes the controller back and reads the area; no hugetlbfs file is
# left behind and HugePages_Free is back to its value before the runs.
set -eu
. "$(dirname "$0")/../lib.sh"
bdf=$(bdf_of 0)
perf=$(need_bin nvme-perf)
area=4M

huge_free() { awk '$1 == "HugePages_Free:" { print $2 }' /proc/meminfo; }
hugepages_back() { [ "$(huge_free)" = "$free_before" ]; }
check_area() {
    "$perf" "$bdf" --check-pattern --span $area -o 64k --json >"$1" ||
        fail "--check-pattern after $2 exited with status $?: $(cat "$1")"
    json_get "$1" '"%d blocks: %d whole (%d generations), %d torn, %d misplaced, %d garbage" % (j["blocks"], j["whole"], j["generations"], j["torn"], j["misplaced"], j["garbage"]) if j["whole"] == j["blocks"] > 0 else sys.exit("not every block is whole: %s" % j)' >&2 ||
        fail "after $2: $(cat "$1")"
}

bind_vfio "$bdf" >/dev/null
log "reset methods of $bdf (vfio-pci resets the function on release): $(cat "/sys/bus/pci/devices/$bdf/reset_method" 2>/dev/null || echo none)"
free_before=$(huge_free)

# Old data: one sequential pass of the pattern over the area.
"$perf" "$bdf" -w write -o 4k -q 32 --span $area -d 1024 -t 60 --verify --json >/tmp/prefill.json 2>/dev/null ||
    fail "the pre-fill exited with status $?: $(cat /tmp/prefill.json)"
[ "$(json_get /tmp/prefill.json "j['writes']")" -eq 1024 ] || fail "the pre-fill did not write the area once"
check_area /tmp/before.json "the pre-fill"

"$perf" "$bdf" -w randrw -M 30 -o 4k -q 32 --span $area -t 60 --verify --json >/tmp/killed.json 2>/tmp/killed.err &
pid=$!
sleep 3
kill -0 $pid 2>/dev/null || fail "nvme-perf ended before it was killed: $(cat /tmp/killed.err)"
kill -KILL $pid
status=0
wait $pid || status=$?
[ $status -eq 137 ] || fail "the killed nvme-perf exited with status $status, not 137 (SIGKILL)"
log "nvme-perf killed with SIGKILL after 3 s of I/O"

wait_for hugepages_back || fail "HugePages_Free is $(huge_free) after the kill, $free_before before"
left=$(find /dev/hugepages -type f | wc -l)
[ "$left" -eq 0 ] || fail "$left hugetlbfs files were left behind: $(find /dev/hugepages -type f)"
log "HugePages_Free back to $free_before, no hugetlbfs files left"

# The next open: the controller comes up and reads the area.
check_area /tmp/after.json "the kill"
python3 -c 'import json, sys; sys.exit(json.load(open(sys.argv[1]))["generations_digest"] == json.load(open(sys.argv[2]))["generations_digest"])' \
    /tmp/before.json /tmp/after.json || fail "no block changed its generation: the killed run wrote nothing"

"$perf" "$bdf" -w randrw -o 4k -q 32 --span $area -t 1 --verify --json >/tmp/next.json ||
    fail "the nvme-perf run after the kill exited with status $?: $(cat /tmp/next.json)"
json_get /tmp/next.json 'j["errors"] == j["verify_failures"] == 0 < j["verified_blocks"] or sys.exit("errors, mismatches or nothing verified")' >/dev/null ||
    fail "the verified run after the kill: $(cat /tmp/next.json)"
check_area /tmp/last.json "a verified run after the kill"

# The kernel driver takes the controller back; its blocks carry our headers.
ctrl=$(bind_nvme "$bdf")
dd if="/dev/${ctrl}n1" of=/tmp/area bs=1M count=4 iflag=direct status=none ||
    fail "the kernel driver cannot read the area"
lbs=$(cat "/sys/block/${ctrl}n1/queue/logical_block_size")
python3 - /tmp/area "$lbs" <<'PY' || fail "the kernel driver reads other blocks than ours"
import struct, sys
data, lbs = open(sys.argv[1], "rb").read(), int(sys.argv[2])
heads = [struct.unpack_from("<QQ", data, at) for at in range(0, len(data), lbs)]
bad = [lba for lba, (w0, w1) in enumerate(heads) if w0 != lba or w1 >> 32 != 0x4E564D45]
if bad:
    sys.exit("%d blocks without their own header, first LBA %d" % (len(bad), bad[0]))
PY
log "the kernel driver reads the area: every block has its own LBA's header"
hugepages_back || fail "HugePages_Free is $(huge_free) at the end, $free_before before"
