# Measurement (reported, not asserted): our nvme-perf 4 KiB random reads at
# QD1 and QD32, polled (1 s warm-up, 5 s measured), next to the kernel's fio io_uring --hipri figures of
# the same boot (kernel_polled_fio). Asserted: nvme-perf finishes without error.
set -eu
. "$(dirname "$0")/../lib.sh"
bdf=$(bdf_of 0)
# An optimised build when the test provides one (NVME_E2E_RELEASE_BIN).
perf=$(NVME_E2E_BIN="${NVME_E2E_RELEASE_BIN:-$(bin_dir)}" need_bin nvme-perf)

bind_vfio "$bdf" >/dev/null
for qd in 1 32; do
    "$perf" "$bdf" -w randread -o 4096 -q $qd --warmup 1 -t 5 --span 64M --json >/tmp/p.json ||
        fail "nvme-perf QD$qd exited with status $?"
    [ "$(json_get /tmp/p.json "j['errors']")" -eq 0 ] || fail "nvme-perf QD$qd reported errors"
    echo "nvme-perf randread 4k QD$qd (poll): $(json_get /tmp/p.json "round(j['iops'])") IOPS, mean latency $(json_get /tmp/p.json "round(j['latency_us']['avg'], 1)") us" |
        tee -a "$NVME_VM_XFER/perf-ours.txt"
done
cat "$NVME_VM_XFER/perf-kernel.txt" 2>/dev/null || true
