# Crash-safe restart, nvme-dio: a script of O_DSYNC writes (distinct random
# contents each, at consecutive offsets of a zeroed area) is killed with
# SIGKILL in the middle. Every write it reported done (--report-writes: one
# flushed line per completed request, with its CRC-32) reads back byte for
# byte, through our driver in a new process and through the kernel driver;
# writes it never started still read as zeros (at most the one after the last
# reported write was in flight); the hugepages are free again.
set -eu
. "$(dirname "$0")/../lib.sh"
bdf=$(bdf_of 0)
dio=$(need_bin nvme-dio)
dir=/tmp/dio-kill
base=$((16 << 20))
writes=400

huge_free() { awk '$1 == "HugePages_Free:" { print $2 }' /proc/meminfo; }
hugepages_back() { [ "$(huge_free)" = "$free_before" ]; }
acked() { grep -c '}$' "$dir/acks" || true; }
acked_at_least() { [ "$(acked)" -ge "$1" ]; }

mkdir -p "$dir"
# The writes: 4 to 16 KiB each, random contents, one after another from $base;
# the script's words one per line, and the area's total size.
python3 - "$dir" "$base" "$writes" <<'PY'
import os, random, sys
d, base, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(15)
words, at = [], base
for k in range(n):
    size = 4096 * rng.randint(1, 4)
    with open(f"{d}/w{k}", "wb") as f:
        f.write(os.urandom(size))
    words += ["+"] if k else []
    words += ["write", "--offset", str(at), "--input", f"{d}/w{k}", "--dsync"]
    at += size
open(f"{d}/script", "w").write("\n".join(words) + "\n")
open(f"{d}/zeros", "wb").write(bytes(at - base))
PY
length=$(stat -c %s "$dir/zeros")
mapfile -t script <"$dir/script"

bind_vfio "$bdf" >/dev/null
free_before=$(huge_free)
"$dio" "$bdf" write --offset $base --input "$dir/zeros" --dsync >/dev/null || fail "zeroing the area failed"

"$dio" "$bdf" --report-writes "${script[@]}" >"$dir/acks" 2>"$dir/err" &
pid=$!
wait_for acked_at_least 20 || fail "nvme-dio reported fewer than 20 writes: $(cat "$dir/err")"
kill -KILL $pid 2>/dev/null || fail "nvme-dio ended before it was killed"
status=0
wait $pid || status=$?
[ $status -eq 137 ] || fail "the killed nvme-dio exited with status $status, not 137 (SIGKILL): $(cat "$dir/err")"
log "nvme-dio killed with SIGKILL after $(acked) of $writes writes reported done"

wait_for hugepages_back || fail "HugePages_Free is $(huge_free) after the kill, $free_before before"
left=$(find /dev/hugepages -type f | wc -l)
[ "$left" -eq 0 ] || fail "$left hugetlbfs files were left behind"

# compare FILE WHO: the area as read by WHO against the reported writes.
compare() {
    python3 - "$dir" "$base" "$writes" "$1" <<'PY' || fail "$2 reads other bytes than the reported writes"
import json, sys, zlib
d, base, n, area = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), open(sys.argv[4], "rb").read()
acks = [json.loads(l) for l in open(f"{d}/acks") if l.endswith("}\n")]
assert 0 < len(acks) < n, f"{len(acks)} of {n} writes reported: the kill did not come in the middle"
at, last = base, -1
for k in range(n):
    data = open(f"{d}/w{k}", "rb").read()
    got = area[at - base : at - base + len(data)]
    if k < len(acks):
        a = acks[k]
        want = {"step": k + 1, "file": None, "offset": at, "length": len(data), "crc32": zlib.crc32(data)}
        assert a == want, f"write {k + 1} reported {a}, expected {want}"
        assert got == data, f"write {k + 1} at {at} (reported done) does not read back"
    elif k > len(acks):
        assert got == bytes(len(data)), f"write {k + 1} at {at} was never started but is not zeros"
    at += len(data)
print(f"{len(acks)} reported writes read back; the {n - len(acks) - 1} never started read as zeros")
PY
}

"$dio" "$bdf" read --offset $base --length "$length" --output "$dir/back" >/dev/null ||
    fail "reading the area back after the kill failed"
r=$(compare "$dir/back" "nvme-dio")
log "through our driver: $r"

ctrl=$(bind_nvme "$bdf")
dd if="/dev/${ctrl}n1" of="$dir/kernel" bs=1M skip=$((base >> 20)) count=$(((length + (1 << 20) - 1) >> 20)) \
    iflag=direct status=none || fail "the kernel driver cannot read the area"
truncate -s "$length" "$dir/kernel"
r=$(compare "$dir/kernel" "the kernel driver")
log "through the kernel driver: $r"
hugepages_back || fail "HugePages_Free is $(huge_free) at the end, $free_before before"
