# nvme-zns report --json through vfio-pci is nvme-cli's `nvme zns report-zones -o
# json` through the kernel driver, zone for zone, with zones in several states and
# at several write pointers: what zns_kernel_reads_back left (zone 0 full, zones 3, 5
# and 8 partly written) plus, through nvme-zns, zone 10 written and closed, zone 11
# opened, zone 12 finished; then again after `reset --all` (every zone empty). Open
# zones do not outlive a controller reset on QEMU (written ones become Closed, an
# opened empty one Empty again), and each driver switch resets it: the open state is
# checked within one nvme-zns run (`open + report`).
set -eu
. "$(dirname "$0")/../lib.sh"
zns=$(need_bin nvme-zns)
dev=$(need_bin nvme-e2e-device)
bdf=$(bdf_of 2)
nsid=2
lbs=$(ns_prop 2 $nsid lbs)
zone_mib=$(ns_prop 2 $nsid zoned.zone_size)
zone_blocks=$((${zone_mib%M} * 1048576 / lbs))

bind_vfio "$bdf" >/dev/null
head -c $((24 * lbs)) /dev/urandom >/tmp/zr
"$dev" "$bdf" write-blocks $nsid $((10 * zone_blocks)) /tmp/zr >/dev/null || fail "the write to zone 10 failed"
"$zns" "$bdf" --ns $nsid close --zone $((10 * zone_blocks)) || fail "nvme-zns close --zone $((10 * zone_blocks)) failed"
"$zns" "$bdf" --ns $nsid open --zone $((11 * zone_blocks)) + report --json >/tmp/zr-open.out ||
    fail "nvme-zns open --zone $((11 * zone_blocks)) + report --json failed"
sed -n '/^{/,$p' /tmp/zr-open.out | json_get - "[z['state'] for z in j['zone_list'] if z['slba'] == $((11 * zone_blocks))]" >/tmp/zr-open.state
grep -q "EXP_OPENED" /tmp/zr-open.state || fail "zone 11 is not Explicitly Opened right after nvme-zns open: $(cat /tmp/zr-open.state)"
"$zns" "$bdf" --ns $nsid finish --zone $((12 * zone_blocks)) || fail "nvme-zns finish --zone $((12 * zone_blocks)) failed"

# compare ROUND: our report now, the kernel's, the same JSON document.
compare() {
    bind_vfio "$bdf" >/dev/null
    "$zns" "$bdf" --ns $nsid report --json >/tmp/zr-ours-$1.json || fail "nvme-zns report --json failed ($1)"
    ctrl=$(bind_nvme "$bdf")
    wait_for test -b "/dev/${ctrl}n$nsid" || fail "/dev/${ctrl}n$nsid did not appear"
    nvme zns report-zones "/dev/${ctrl}n$nsid" -o json >/tmp/zr-kern-$1.json || fail "nvme zns report-zones failed ($1)"
    python3 - "$1" <<'PY' || fail "nvme-zns report differs from nvme zns report-zones ($1, see above)"
import json, sys
r = sys.argv[1]
ours, theirs = json.load(open(f"/tmp/zr-ours-{r}.json")), json.load(open(f"/tmp/zr-kern-{r}.json"))
bad = [f"{k}: ours {ours.get(k)!r}, nvme-cli {theirs.get(k)!r}" for k in set(ours) | set(theirs)
       if k != "zone_list" and ours.get(k) != theirs.get(k)]
oz, tz = ours.get("zone_list", []), theirs.get("zone_list", [])
if len(oz) != len(tz):
    bad.append(f"{len(oz)} zones listed, nvme-cli {len(tz)}")
for i, (o, t) in enumerate(zip(oz, tz)):
    if o != t:
        bad.append(f"zone {i}: ours {o}, nvme-cli {t}")
states = {}
for t in tz:
    states[t.get("state")] = states.get(t.get("state"), 0) + 1
print(f"{r}: {len(tz)} zones agree; states {states}")
for b in bad[:20]:
    print("MISMATCH", b)
sys.exit(1 if bad else 0)
PY
}
compare written
python3 - $zone_blocks <<'PY' || fail "the written zones are not in the states this check set up"
import json, sys
zb = int(sys.argv[1])
zones = {z["slba"] // zb: z for z in json.load(open("/tmp/zr-kern-written.json"))["zone_list"]}
want = {0: "FULL", 3: "CLOSED", 5: "CLOSED", 8: "CLOSED", 10: "CLOSED", 11: "EMPTY", 12: "FULL", 1: "EMPTY"}
bad = [f"zone {k}: {zones[k]['state']}, expected {v}" for k, v in want.items() if zones[k]["state"] != v]
want_wp = {3: 3 * zb + 96, 5: 5 * zb + 64, 8: 8 * zb + 32, 10: 10 * zb + 24}
bad += [f"zone {k}: write pointer {zones[k]['wp']}, expected {v}" for k, v in want_wp.items() if zones[k]["wp"] != v]
for b in bad:
    print("FAIL", b)
sys.exit(1 if bad else 0)
PY
bind_vfio "$bdf" >/dev/null
"$zns" "$bdf" --ns $nsid reset --all || fail "nvme-zns reset --all failed"
compare reset
python3 -c '
import json, sys
z = json.load(open("/tmp/zr-kern-reset.json"))["zone_list"]
bad = [x for x in z if x["state"] != "EMPTY" or x["wp"] != x["slba"]]
sys.exit(f"FAIL: after reset --all, zones not empty at their start: {bad[:3]}" if bad else 0)'
