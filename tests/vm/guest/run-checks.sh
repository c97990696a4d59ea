#!/bin/bash
# usage: run-checks.sh CHECK...
# Runs tests/vm/guest/checks/CHECK.sh for each CHECK, in order, inside the test
# guest. Each writes its output to $NVME_VM_XFER/checks/CHECK.log and
# "<exit status> <milliseconds>" to CHECK.status; a failure does not stop the
# next check. Exits with the number of failed checks (at most 100).
# CHECK_TIMEOUT (seconds, default 150) bounds each check.
here="$(cd "$(dirname "$0")" && pwd)"
out="${NVME_VM_XFER:?run this inside the test guest}/checks"
mkdir -p "$out"
failed=0
for c in "$@"; do
    script="$here/checks/$c.sh"
    start=$(date +%s%N)
    if [ -f "$script" ]; then
        timeout -k 5 "${CHECK_TIMEOUT:-150}" bash "$script" >"$out/$c.log" 2>&1
        status=$?
        [ $status -ne 124 ] || echo "FAIL: timed out after ${CHECK_TIMEOUT:-150} s" >>"$out/$c.log"
    else
        echo "FAIL: no check script $script" >"$out/$c.log"
        status=127
    fi
    ms=$((($(date +%s%N) - start) / 1000000))
    echo "$status $ms" >"$out/$c.status"
    if [ $status -eq 0 ]; then
        echo "CHECK $c: pass (${ms} ms)"
    else
        failed=$((failed + 1))
        echo "CHECK $c: FAIL (exit $status, ${ms} ms); last lines:"
        tail -n 20 "$out/$c.log" | sed 's/^/    /'
    fi
done
[ $failed -le 100 ] || failed=100
exit $failed
