# A transfer larger than MDTS on the small-MDTS controller (controller 1): the
# controller reports the configured MDTS (in units of CAP.MPSMIN pages), and
# nvme-perf -o 1M --verify through vfio-pci runs clean on a plain namespace and on
# an extended-LBA one (each 1 MiB I/O is many commands the driver splits it into).
set -eu
. "$(dirname "$0")/../lib.sh"
perf=$(need_bin nvme-perf)
identify=$(need_bin nvme-identify)
bdf=$(bdf_of 1)
mdts=$(conf_of 1 mdts)
[ -n "$mdts" ] || fail "controller 1 was configured without mdts"

bind_vfio "$bdf" >/dev/null
"$identify" "$bdf" --json >/tmp/fmdts.json || fail "nvme-identify $bdf exited with status $?"
got=$(json_get /tmp/fmdts.json 'j["controller"]["mdts"]')
page=$(json_get /tmp/fmdts.json 'j["controller"]["cap"]["mpsmin_bytes"]')
[ "$got" -eq "$mdts" ] || fail "controller 1 reports mdts $got, configured $mdts"
log "controller 1: mdts $got = $(((1 << got) * page)) bytes per command (CAP.MPSMIN $page bytes)"

failed=0
for nsid in 1 $(ns_ids 1); do
    what="ns $nsid ($(ns_prop 1 "$nsid" lbs)+$(ns_prop 1 "$nsid" ms) mset=$(ns_prop 1 "$nsid" mset))"
    [ "$nsid" = 1 ] && what="ns 1 (512)"
    if ! "$perf" "$bdf" --ns "$nsid" -w randrw -M 50 -o 1M -q 4 --verify --span 8M -t 2 --json \
        >/tmp/fbig-$nsid.json 2>/tmp/fbig-$nsid.err; then
        log "FAIL $what: nvme-perf -o 1M exited with an error: $(cat /tmp/fbig-$nsid.err)"
        failed=$((failed + 1))
        continue
    fi
    r=$(json_get /tmp/fbig-$nsid.json '"%d %d %d %d" % (j["errors"], j["verify_failures"], j["ios"], j["verified_blocks"])')
    set -- $r
    if [ "$1" -ne 0 ] || [ "$2" -ne 0 ] || [ "$3" -eq 0 ] || [ "$4" -eq 0 ]; then
        log "FAIL $what: errors $1, mismatches $2, I/Os $3, verified blocks $4"
        failed=$((failed + 1))
    else
        log "ok   $what: $3 I/Os of 1 MiB, $4 blocks verified"
    fi
done
[ $failed -eq 0 ] || fail "1 MiB transfers above MDTS failed on $failed namespaces (see above)"
