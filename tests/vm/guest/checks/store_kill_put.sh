# The persistent store on a real controller through vfio: files put by one
# nvme-store process (random contents, with and without --dsync) are read back
# byte for byte by the next; a put of O_DSYNC chunks killed with SIGKILL in the
# middle (the next process resets the controller: vfio-pci resets the function
# and our bring-up clears CC.EN) leaves a store that fsck finds clean, every
# other file intact, and the killed file present with a prefix of its source
# that holds at least every chunk the put reported done (never other bytes).
set -eu
. "$(dirname "$0")/../lib.sh"
bdf=$(bdf_of 0)
st=$(need_bin nvme-store)
dir=/tmp/store-kill
region=128M:64M
chunk=65536

store() { "$st" "$bdf" --region $region "$@"; }
acked() { grep -c '}$' "$dir/acks" || true; }
acked_at_least() { [ "$(acked)" -ge "$1" ]; }
huge_free() { awk '$1 == "HugePages_Free:" { print $2 }' /proc/meminfo; }
hugepages_back() { [ "$(huge_free)" = "$free_before" ]; }

mkdir -p "$dir"
head -c $((2 * 1048576 + 123)) /dev/urandom >"$dir/a"
head -c $((1048576)) /dev/urandom >"$dir/b"
head -c $((8 * 1048576)) /dev/urandom >"$dir/big"

bind_vfio "$bdf" >/dev/null
free_before=$(huge_free)
store mkfs --force --json >"$dir/mkfs.json" || fail "mkfs failed"
store put "$dir/a" a --json >"$dir/put-a.json" || fail "put a failed"
store put "$dir/b" b --dsync --json >"$dir/put-b.json" || fail "put b --dsync failed"
[ "$(json_get "$dir/put-b.json" 'j["fua_commands"] >= 1 and j["journal_commits"] >= 1')" = True ] ||
    fail "put --dsync made no FUA journal commit: $(cat "$dir/put-b.json")"
log "put a: $(json_get "$dir/put-a.json" '(j["commands"], j["fua_commands"], j["flush_commands"], j["journal_commits"])')" \
    "b --dsync: $(json_get "$dir/put-b.json" '(j["commands"], j["fua_commands"], j["flush_commands"], j["journal_commits"])')" \
    "(commands, FUA, flush, journal commits)"

# Not through the `store` function: $! must be nvme-store itself, not a subshell.
"$st" "$bdf" --region $region put "$dir/big" big --dsync --chunk $chunk --report-writes \
    >"$dir/acks" 2>"$dir/err" &
pid=$!
wait_for acked_at_least 8 || fail "nvme-store put reported fewer than 8 writes: $(cat "$dir/err")"
kill -KILL $pid 2>/dev/null || fail "nvme-store put ended before it was killed"
status=0
wait $pid || status=$?
[ $status -eq 137 ] || fail "the killed put exited with status $status, not 137 (SIGKILL): $(cat "$dir/err")"
n=$(acked)
log "nvme-store put killed with SIGKILL after $n of $((8 * 1048576 / chunk)) chunks reported durable"
wait_for hugepages_back || fail "HugePages_Free is $(huge_free) after the kill, $free_before before"

store fsck --json >"$dir/fsck.json" || fail "fsck after the kill: $(cat "$dir/fsck.json")"
[ "$(json_get "$dir/fsck.json" 'j["clean"] and j["files"] == 3')" = True ] ||
    fail "fsck after the kill: $(cat "$dir/fsck.json")"
log "fsck clean: $(json_get "$dir/fsck.json" 'j["journal_transactions"]') journal transactions to replay"

for f in a b; do
    store get $f "$dir/$f.back" >/dev/null || fail "get $f after the kill failed"
    cmp -s "$dir/$f" "$dir/$f.back" || fail "get $f after the kill returns other bytes than were put"
done
store get big "$dir/big.back" >/dev/null || fail "get big after the kill failed"
python3 - "$dir" $chunk <<'PY' || fail "the killed put's file holds other bytes than it was given"
import json, sys, zlib
d, chunk = sys.argv[1], int(sys.argv[2])
src, back = open(f"{d}/big", "rb").read(), open(f"{d}/big.back", "rb").read()
acks = [json.loads(l) for l in open(f"{d}/acks") if l.endswith("}\n")]
for k, a in enumerate(acks):
    want = {"name": "big", "offset": k * chunk, "length": chunk,
            "crc32": zlib.crc32(src[k * chunk:(k + 1) * chunk]), "dsync": True}
    assert a == want, f"chunk {k} reported {a}, expected {want}"
assert len(acks) < len(src) // chunk, "every chunk was reported: the kill came too late"
assert len(back) >= len(acks) * chunk, f"{len(back)} bytes back, {len(acks)} chunks reported durable"
assert back == src[:len(back)], "bytes differ from the source's prefix"
print(f"{len(back)} bytes back, a prefix of the source; {len(acks)} chunks were reported")
PY

# The store stays usable: a new put after the kill, then a clean check.
store put "$dir/b" b2 --json >/dev/null || fail "put after the kill failed"
store get b2 - | cmp -s - "$dir/b" || fail "get b2 returns other bytes than were put"
store fsck --json >"$dir/fsck2.json" || fail "the final fsck failed: $(cat "$dir/fsck2.json")"
[ "$(json_get "$dir/fsck2.json" 'j["clean"] and j["files"] == 4')" = True ] ||
    fail "the final fsck: $(cat "$dir/fsck2.json")"
hugepages_back || fail "HugePages_Free is $(huge_free) at the end, $free_before before"
