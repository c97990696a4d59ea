# NVMe/TCP check 3: nvme-perf --verify over TCP against the Linux target runs
# clean with several queue pairs (one TCP connection each): random reads and
# writes of 4 KiB (in-capsule writes) on 4 queue pairs at queue depth 16, then
# of 128 KiB (writes above the target's in-capsule limit: R2T and H2CData; reads
# in several C2HData PDUs) on 2 queue pairs at queue depth 8. Each: exit status
# 0, no errors, no mismatches, blocks verified, reads and writes both done.
set -eu
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../tcp.sh"
perf=$(need_bin nvme-perf)

tcp_target_up
for run in "4k 4 16 5" "128k 2 8 3"; do
    set -- $run
    size=$1 qpairs=$2 qd=$3 secs=$4
    log "nvme-perf $TCP_DEV -w randrw -o $size --qpairs $qpairs -q $qd -t $secs --verify"
    "$perf" "$TCP_DEV" -w randrw -o "$size" --qpairs "$qpairs" -q "$qd" -t "$secs" --verify --json \
        >/tmp/perf.json 2>/tmp/perf.err || {
        status=$?
        cat /tmp/perf.err >&2
        fail "nvme-perf -o $size --qpairs $qpairs exited with status $status"
    }
    json_get /tmp/perf.json '"%d I/Os (%d reads, %d writes), %.0f IOPS, %d errors, %d mismatching of %d checked blocks" % (j["ios"], j["reads"], j["writes"], j["iops"], j["errors"], j["verify_failures"], j["verified_blocks"])' >&2
    json_get /tmp/perf.json 'j["errors"] == j["verify_failures"] == len(j["mismatches"]) == 0 < j["verified_blocks"] and j["reads"] > 0 < j["writes"] or sys.exit("not clean")' >/dev/null ||
        fail "nvme-perf -o $size --qpairs $qpairs is not clean: $(cat /tmp/perf.json)"
done
