# Check 4: our driver completes I/O both by polling and by MSI-X interrupts:
# both modes finish without error, and only the interrupt mode makes the
# device's I/O vectors (vfio-msix[1..]) fire. VFIO frees the vectors when the
# process exits, so the count is sampled repeatedly while nvme-perf runs.
set -eu
. "$(dirname "$0")/../lib.sh"
bdf=$(bdf_of 0)
perf=$(need_bin nvme-perf)

bind_vfio "$bdf" >/dev/null
io_irqs() {
    awk -v d="($bdf)" 'index($0, d) && $NF ~ /^vfio-msix\[[1-9]/ { for (i = 2; i < NF - 2; i++) s += $i } END { print s + 0 }' /proc/interrupts
}
for mode in poll interrupt; do
    "$perf" "$bdf" -w randread -q 8 -t 2 --span 16M --mode $mode --json >/tmp/$mode.json &
    pid=$!
    # Counts only grow while the vectors exist: keep the largest sample.
    irqs=0
    while kill -0 $pid 2>/dev/null; do
        n=$(io_irqs)
        [ "$n" -le "$irqs" ] || irqs=$n
        sleep 0.1
    done
    wait $pid || fail "nvme-perf --mode $mode exited with status $?"
    ios=$(json_get /tmp/$mode.json "j['ios']")
    errs=$(json_get /tmp/$mode.json "j['errors']")
    [ "$errs" -eq 0 ] || fail "--mode $mode: $errs I/O errors"
    [ "$ios" -gt 0 ] || fail "--mode $mode completed no I/O"
    log "--mode $mode: $ios I/Os, $irqs I/O-queue MSI-X interrupts seen"
    eval "irqs_$mode=$irqs ios_$mode=$ios"
done
[ "$irqs_interrupt" -gt 0 ] || fail "--mode interrupt raised no MSI-X interrupt on an I/O vector"
[ "$irqs_poll" -le $((ios_poll / 100 + 10)) ] || fail "--mode poll raised $irqs_poll I/O interrupts for $ios_poll I/Os"
