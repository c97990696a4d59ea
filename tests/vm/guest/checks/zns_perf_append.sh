# nvme-perf on the zoned namespace through vfio-pci: -w append --verify (Zone
# Append at queue depth 8, each block checked at the LBA the device returned) runs
# clean over a few zones and over the whole namespace, -w write too; -w randwrite is refused before any I/O with a message about zones.
set -eu
. "$(dirname "$0")/../lib.sh"
perf=$(need_bin nvme-perf)
bdf=$(bdf_of 2)
nsid=2

bind_vfio "$bdf" >/dev/null
if "$perf" "$bdf" --ns $nsid -w randwrite -o 4k -q 8 -t 1 >/tmp/zp-rw.out 2>/tmp/zp-rw.err; then
    fail "nvme-perf -w randwrite ran on a zoned namespace"
fi
grep -qi zone /tmp/zp-rw.err || fail "nvme-perf -w randwrite was refused without explaining zones: $(cat /tmp/zp-rw.err)"
grep -qi "append" /tmp/zp-rw.err || fail "the refusal of -w randwrite does not point to -w append: $(cat /tmp/zp-rw.err)"
grep -q "^" /tmp/zp-rw.out && log "(randwrite printed: $(head -c 300 /tmp/zp-rw.out))"
log "randwrite refused: $(cat /tmp/zp-rw.err)"
# Appends over 4 zones (within the open and active limits) and over the whole
# namespace (32 zones, above them: nvme-perf keeps within the limits the namespace
# reports); then sequential writes (-w write, one writer per zone) over the whole
# namespace, where no error means every write was at a write pointer.
for row in append:4M append:whole write:whole; do
    w=${row%%:*} span=${row#*:}
    flags="-w $w"
    [ "$w" = append ] && flags="$flags --verify"
    [ "$span" = whole ] || flags="$flags --span $span"
    # shellcheck disable=SC2086
    "$perf" "$bdf" --ns $nsid $flags -o 16k -q 8 -t 2 --json >/tmp/zp-$w-$span.json 2>/tmp/zp-$w-$span.err ||
        fail "nvme-perf $flags exited with status $?: $(cat /tmp/zp-$w-$span.err)"
    python3 - "$w" "$span" <<'PY' || fail "nvme-perf -w $w (span $span) did not run clean (see above)"
import json, sys
w, span = sys.argv[1:]
j = json.load(open(f"/tmp/zp-{w}-{span}.json"))
bad = [f"{k} {j.get(k)}" for k in ["errors", "verify_failures"] if j.get(k) != 0]
bad += [f"no {k}" for k in (["writes", "verified_blocks"] if w == "append" else ["writes"]) if not j.get(k, 0) > 0]
print(f"-w {w}, span {span}: {j.get('ios')} I/Os, {j.get('writes')} writes, {j.get('verified_blocks')} blocks verified")
for b in bad:
    print("FAIL", b)
sys.exit(1 if bad else 0)
PY
done
