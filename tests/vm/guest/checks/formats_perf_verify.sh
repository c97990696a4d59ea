# nvme-perf --verify through vfio-pci on every metadata format of the formats
# controller: a short random read/write mix whose every read of a block written in
# the run is checked (data and, on extended LBAs, metadata); no I/O error, no
# mismatch, and the run reports the namespace's format. Rows marked `refused` are
# formats nvme-perf does not drive yet: it must refuse them before any I/O, naming
# separate metadata. Supporting one is a one-word change of its row.
set -eu
. "$(dirname "$0")/../lib.sh"
perf=$(need_bin nvme-perf)
bdf=$(bdf_of 0)

# nsid  nvme-perf flags  expected   (each namespace's format: formats_guest in qemu_vfio.rs)
rows="
2  -           verify
3  -           refused
4  -           verify
5  --pi=pract  verify
5  -           refused
6  --pi=pract  verify
6  -           verify
7  -           verify
8  --pi=pract  verify
8  -           verify
"

bind_vfio "$bdf" >/dev/null
: >/tmp/fperf.runs
r=0
while read -r nsid flags expect; do
    [ -n "$nsid" ] || continue
    r=$((r + 1))
    [ "$flags" = - ] && flags=""
    status=0
    # shellcheck disable=SC2086
    "$perf" "$bdf" --ns "$nsid" $flags -w randrw -M 50 -o 4k -q 8 --verify --span 4M -t 1 \
        --json >/tmp/fperf-$r.json 2>/tmp/fperf-$r.err || status=$?
    echo "$r $nsid $expect $status $(ns_prop 0 "$nsid" lbs) $(ns_prop 0 "$nsid" ms)" \
        "$(ns_prop 0 "$nsid" mset) $(ns_prop 0 "$nsid" pi) ${flags:-none}" >>/tmp/fperf.runs
done <<ROWS
$rows
ROWS

python3 - /tmp/fperf.runs <<'PY' || fail "nvme-perf --verify failed on some formats (see above)"
import json, sys
failed = 0
for line in open(sys.argv[1]):
    r, nsid, expect, status, lbs, ms, mset, pi, flags = line.split()
    what = f"ns {nsid} ({lbs}+{ms} mset={mset} pi={pi}) {flags}"
    err = open(f"/tmp/fperf-{r}.err").read().strip()
    bad = []
    if status != "0":
        if expect == "refused" and "separate metadata" in err:
            print(f"ok   {what}: refused before any I/O: {err}")
            continue
        bad.append(f"exit status {status}: {err}")
    elif expect == "refused":
        bad.append("ran where it was expected to refuse (flip the row to verify)")
    else:
        j = json.load(open(f"/tmp/fperf-{r}.json"))
        c = j["config"]
        bad += [f"{k} {j[k]}" for k in ["errors", "verify_failures"] if j[k] != 0]
        bad += [f"no {k}" for k in ["reads", "writes", "verified_blocks"] if j[k] <= 0]
        if c["metadata_bytes"] != int(ms):
            bad.append(f"reports {c['metadata_bytes']} metadata bytes, configured {ms}")
        if int(ms) and c["extended_lba"] != (mset == "1"):
            bad.append(f"reports extended_lba {c['extended_lba']}, configured mset={mset}")
        want_pi = "pract" if "pract" in flags else "off"
        if c["pi"] != want_pi:
            bad.append(f"reports pi {c['pi']}, asked for {want_pi}")
        if not bad:
            print(f"ok   {what}: {j['ios']} I/Os, {j['verified_blocks']} blocks verified")
    if bad:
        failed += 1
        print(f"FAIL {what}: " + "; ".join(bad))
sys.exit(1 if failed else 0)
PY
