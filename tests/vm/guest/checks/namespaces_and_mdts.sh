# Check 5: our driver on namespace 2 (4096-byte LBAs) and on controller 1
# (MDTS 2: 16 KiB per command): verified random mixed I/O on both; larger
# I/O than MDTS is split or refused by name; a 256 KiB nvme-dio write to
# controller 1 (many commands) reads back byte for byte through the kernel.
set -eu
. "$(dirname "$0")/../lib.sh"
perf=$(need_bin nvme-perf)
dio=$(need_bin nvme-dio)
b0=$(bdf_of 0) b1=$(bdf_of 1)

bind_vfio "$b0" >/dev/null
"$perf" "$b0" --ns 2 -w randrw -o 8k -q 16 --verify --span 16M -t 2 --json >/tmp/ns2.json ||
    fail "nvme-perf on ns 2 exited with status $?: $(cat /tmp/ns2.json)"
[ "$(json_get /tmp/ns2.json "j['verify_failures'] + j['errors']")" -eq 0 ] || fail "ns 2: errors or mismatches"
[ "$(json_get /tmp/ns2.json "j['verified_blocks']")" -gt 0 ] || fail "ns 2: nothing verified"

bind_vfio "$b1" >/dev/null
"$perf" "$b1" -w randrw -o 16k -q 8 --verify --span 16M -t 2 --json >/tmp/mdts.json ||
    fail "nvme-perf -o 16k on the MDTS-2 controller exited with status $?: $(cat /tmp/mdts.json)"
[ "$(json_get /tmp/mdts.json "j['verify_failures'] + j['errors']")" -eq 0 ] || fail "MDTS 2: errors or mismatches"
[ "$(json_get /tmp/mdts.json "j['verified_blocks']")" -gt 0 ] || fail "MDTS 2: nothing verified"
# Larger than MDTS: nvme-perf may split or refuse, but a refusal must name MDTS.
if ! "$perf" "$b1" -w randread -o 64k -q 4 --span 16M -t 1 --json >/tmp/big.json 2>/tmp/big.err; then
    grep -q MDTS /tmp/big.err || fail "nvme-perf -o 64k on the MDTS-2 controller failed without naming MDTS: $(cat /tmp/big.err)"
    log "nvme-perf -o 64k refused: $(cat /tmp/big.err)"
fi
head -c 262144 /dev/urandom >/tmp/big
"$dio" --json "$b1" write --offset 1048576 --input /tmp/big >/tmp/dio.json || fail "nvme-dio 256 KiB write failed"
cmds=$(json_get /tmp/dio.json "j['commands']" 2>/dev/null || echo "?")
log "256 KiB write on the MDTS-2 controller: $cmds commands"
ctrl=$(bind_nvme "$b1")
dd if="/dev/${ctrl}n1" of=/tmp/big.k bs=256k skip=4 count=1 iflag=direct status=none
cmp /tmp/big /tmp/big.k || fail "the kernel reads other bytes than nvme-dio wrote on the MDTS-2 controller"
