# nvme-perf --verify through vfio-pci on every metadata format of the formats
# controller: a short random read/write mix whose every read of a block written in
# the run is checked (data and, on extended LBAs, metadata); no I/O error, no
# mismatch, and the run reports the namespace's format, the protection-information
# mode and the transfer form (PRP or SGL) asked for. A row marked `refused` must be
# refused before any I/O, naming separate metadata.
set -eu
. "$(dirname "$0")/../lib.sh"
perf=$(need_bin nvme-perf)
bdf=$(bdf_of 0)

# nsid  nvme-perf flags  expected   (each namespace's format: formats_guest in qemu_vfio.rs)
rows="
2  -                 verify
2  --sgl             verify
3  -                 verify
3  --sgl             verify
4  -                 verify
5  -                 verify
5  --pi=pract        verify
5  --pi=host         verify
6  -                 verify
6  --pi=pract        verify
6  --pi=host         verify
6  --pi=host,--sgl   verify
7  -                 verify
7  --pi=pract        verify
7  --pi=host         verify
8  -                 verify
8  --pi=pract        verify
8  --pi=host         verify
9  -                 verify
9  --pi=pract        verify
9  --pi=host         verify
"

bind_vfio "$bdf" >/dev/null
: >/tmp/fperf.runs
r=0
while read -r nsid flags expect; do
    [ -n "$nsid" ] || continue
    r=$((r + 1))
    # A row's flags are comma-separated.
    if [ "$flags" = - ]; then flags=""; else flags=$(echo "$flags" | tr , ' '); fi
    status=0
    case "$flags" in
    *--pi=host*)
        # Blocks an earlier row wrote without host tuples fail the controller's checks
        # (as they would under fio's PRCHK): write the whole span with tuples first.
        # shellcheck disable=SC2086
        "$perf" "$bdf" --ns "$nsid" $flags -w write -o 64k -q 1 -d 64 --span 4M -t 30 \
            >/dev/null 2>/tmp/fperf-$r.fill || status=$?
        ;;
    esac
    # shellcheck disable=SC2086
    [ "$status" -ne 0 ] || "$perf" "$bdf" --ns "$nsid" $flags -w randrw -M 50 -o 4k -q 8 --verify --span 4M -t 1 \
        --json >/tmp/fperf-$r.json 2>/tmp/fperf-$r.err || status=$?
    echo "$r $nsid $expect $status $(ns_prop 0 "$nsid" lbs) $(ns_prop 0 "$nsid" ms)" \
        "$(ns_prop 0 "$nsid" mset) $(ns_prop 0 "$nsid" pi) $(echo "${flags:-none}" | tr ' ' ,)" >>/tmp/fperf.runs
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
    try:
        fill = open(f"/tmp/fperf-{r}.fill").read().strip()
        if fill:
            err = f"{err} (filling the span first: {fill})"
    except FileNotFoundError:
        pass
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
        want_pi = "host" if "host" in flags else "pract" if "pract" in flags else "off"
        if c["pi"] != want_pi:
            bad.append(f"reports pi {c['pi']}, asked for {want_pi}")
        want_transfer = "sgl" if "--sgl" in flags else "prp"
        if c.get("transfer") != want_transfer:
            bad.append(f"reports transfer {c.get('transfer')}, asked for {want_transfer}")
        if not bad:
            print(f"ok   {what}: {j['ios']} I/Os, {j['verified_blocks']} blocks verified")
    if bad:
        failed += 1
        print(f"FAIL {what}: " + "; ".join(bad))
sys.exit(1 if failed else 0)
PY
