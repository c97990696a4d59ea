# NVMe/TCP measurement (reported, not asserted): 4 KiB random reads at QD1
# and QD32 over loopback against the Linux target's subsystem, the kernel's
# nvme-tcp initiator (fio io_uring --direct=1 on its block device) against our
# NVMe/TCP transport (nvme-perf, an optimised build), in alternating rounds
# within this one boot: odd rounds run the kernel first, even rounds ours
# first, so both see the same drift of the host's load. Every run: 1 s
# warm-up, 5 s measured, the whole 64 MiB namespace (filled with random data
# first). Printed: per round each side's IOPS, mean latency (submission to
# completion), CPU per I/O and the ours/kernel IOPS ratio; then per queue
# depth the medians and the median of the per-round ratios.
#
# CPU per I/O, two ways: the process's (fio: its usr + sys CPU time over the
# measured part / I/Os; ours: nvme-perf's cpu_ns_per_io, its I/O threads' CPU
# time / I/Os), and the whole guest's (busy CPU time of all guest CPUs per
# second of the run, from /proc/stat, / IOPS): the kernel initiator does much
# of its work in kworker threads fio's times do not count, and the guest's
# figure includes the target's work for both sides.
# Asserted: every run finishes without error and completes I/O. PERF_ROUNDS
# (default 3) sets the number of rounds. Results: $NVME_VM_XFER/tcp-perf-rounds.tsv
# (round, queue depth, side, IOPS, mean latency us, process CPU ns/IO, guest
# CPU ns/IO, host steal % or "-").
set -eu
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../tcp.sh"
perf=$(NVME_E2E_BIN="${NVME_E2E_RELEASE_BIN:-$(bin_dir)}" need_bin nvme-perf)
rounds=${PERF_ROUNDS:-3}
warmup=1
runtime=5
span=${TCP_NS_MIB}M
cpus=$(nproc)
out="$NVME_VM_XFER/tcp-perf-rounds.tsv"
: >"$out"

# guest_cpu: "busy total" jiffies of all guest CPUs (busy: user, nice, system,
# irq, softirq; total adds idle and iowait).
guest_cpu() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 }' /proc/stat; }
# guest_ns_per_io BEFORE AFTER IOPS: busy guest CPU-ns per second of the run / IOPS.
guest_ns_per_io() {
    echo "$1 $2 $3" | awk -v n="$cpus" '{ t = $4 - $2; if (t > 0 && $5 > 0) printf "%.0f\n", ($3 - $1) / t * n * 1e9 / $5; else print "-" }'
}

tcp_target_up
conn=$(tcp_kernel_connect)
set -- $conn
dev=/dev/$2
# Data to read: the whole namespace, written straight into its backing file.
dd if=/dev/urandom of="$TCP_NS_FILE" bs=1M count="$TCP_NS_MIB" conv=notrunc status=none
log "kernel initiator: $1 ($dev, $(($(cat /sys/class/nvme/$1/queue_count) - 1)) I/O queues); ours: $TCP_DEV ($perf)"

# kernel ROUND: fio at QD1 and QD32 on the kernel initiator's block device.
kernel() {
    local qd errs ios iops lat cpu g0 g1 host0 steal
    for qd in 1 32; do
        g0=$(guest_cpu)
        host0=$(host_cpu)
        fio --name=randread --filename="$dev" --ioengine=io_uring --direct=1 --rw=randread \
            --bs=4k --iodepth=$qd --size=$span --ramp_time=$warmup --runtime=$runtime --time_based \
            --output-format=json >/tmp/fio.json || fail "round $1: fio QD$qd failed"
        g1=$(guest_cpu)
        steal=$(host_steal "$host0" "$(host_cpu)")
        # One interpreter start per run: Python is slow to start under emulation.
        json_get /tmp/fio.json '" ".join(str(v) for v in (j["jobs"][0]["error"], j["jobs"][0]["read"]["total_ios"], j["jobs"][0]["read"]["iops"], j["jobs"][0]["read"]["lat_ns"]["mean"] / 1000, round((j["jobs"][0]["usr_cpu"] + j["jobs"][0]["sys_cpu"]) / 100 * j["jobs"][0]["job_runtime"] * 1e6 / max(j["jobs"][0]["read"]["total_ios"], 1))))' >/tmp/fio.txt
        read -r errs ios iops lat cpu </tmp/fio.txt
        [ "$errs" -eq 0 ] || fail "round $1: fio QD$qd reported error $errs"
        [ "$ios" -gt 0 ] || fail "round $1: fio QD$qd completed no I/O"
        printf '%s\t%s\tkernel\t%s\t%s\t%s\t%s\t%s\n' "$1" $qd "$iops" "$lat" "$cpu" \
            "$(guest_ns_per_io "$g0" "$g1" "$iops")" "$steal" >>"$out"
    done
}

# ours ROUND: nvme-perf at QD1 and QD32 over our NVMe/TCP transport.
ours() {
    local qd errs ios iops lat cpu g0 g1 host0 steal
    for qd in 1 32; do
        g0=$(guest_cpu)
        host0=$(host_cpu)
        "$perf" "$TCP_DEV" -w randread -o 4096 -q $qd --warmup $warmup -t $runtime --span "$span" --json \
            >/tmp/p.json 2>/tmp/p.err || {
            local status=$?
            cat /tmp/p.err >&2
            fail "round $1: nvme-perf QD$qd exited with status $status"
        }
        g1=$(guest_cpu)
        steal=$(host_steal "$host0" "$(host_cpu)")
        json_get /tmp/p.json '" ".join(str(v) for v in (j["errors"], j["ios"], j["iops"], j["latency_us"]["avg"], round(j["cpu_ns_per_io"])))' >/tmp/p.txt
        read -r errs ios iops lat cpu </tmp/p.txt
        [ "$errs" -eq 0 ] || fail "round $1: nvme-perf QD$qd reported $errs errors"
        [ "$ios" -gt 0 ] || fail "round $1: nvme-perf QD$qd completed no I/O"
        printf '%s\t%s\tours\t%s\t%s\t%s\t%s\t%s\n' "$1" $qd "$iops" "$lat" "$cpu" \
            "$(guest_ns_per_io "$g0" "$g1" "$iops")" "$steal" >>"$out"
    done
}

alternate_rounds "$rounds"

python3 - "$out" "$cpus" <<'EOF2'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines()]
num = lambda v: None if v == "-" else float(v)
runs = {(int(r), int(qd), side): (float(iops), float(lat), float(cpu), num(g), num(st))
        for r, qd, side, iops, lat, cpu, g, st in rows}
rounds = sorted({k[0] for k in runs})
pct = lambda v: "?" if v is None else f"{v:.0f}%"
ns = lambda v: "?" if v is None else f"{v / 1000:.1f} us"
def med(qd, side, i):
    vals = [runs[(r, qd, side)][i] for r in rounds if runs[(r, qd, side)][i] is not None]
    return statistics.median(vals) if vals else None
print("NVMe/TCP over loopback to the Linux target (nvmet-tcp, tmpfs-backed namespace, "
      f"{sys.argv[2]} guest CPUs): 4 KiB random reads, 1 s warm-up + 5 s measured per run;"
      " kernel = fio io_uring --direct=1 on the kernel's nvme-tcp initiator, ours = nvme-perf"
      " over our NVMe/TCP transport; latency = mean, submission to completion; CPU/IO ="
      " the process's CPU time per I/O (fio usr+sys; nvme-perf's I/O threads), guest CPU/IO ="
      " busy time of all guest CPUs (initiator, target, kworkers) per I/O; host steal ="
      " share of the host's CPU time its hypervisor gave to others during the run")
for qd in (1, 32):
    ratios = []
    for r in rounds:
        k, o = runs[(r, qd, "kernel")], runs[(r, qd, "ours")]
        ratios.append(o[0] / k[0])
        print(f"round {r} QD{qd}: kernel {k[0]:.0f} IOPS {k[1]:.1f} us CPU/IO {ns(k[2])} guest CPU/IO {ns(k[3])}"
              f" | ours {o[0]:.0f} IOPS {o[1]:.1f} us CPU/IO {ns(o[2])} guest CPU/IO {ns(o[3])}"
              f" | ours/kernel {o[0] / k[0]:.2f}x IOPS | host steal {pct(k[4])} / {pct(o[4])}")
    print(f"median QD{qd} over {len(rounds)} rounds: kernel {med(qd, 'kernel', 0):.0f} IOPS"
          f" {med(qd, 'kernel', 1):.1f} us CPU/IO {ns(med(qd, 'kernel', 2))} guest CPU/IO {ns(med(qd, 'kernel', 3))}"
          f" | ours {med(qd, 'ours', 0):.0f} IOPS {med(qd, 'ours', 1):.1f} us CPU/IO {ns(med(qd, 'ours', 2))}"
          f" guest CPU/IO {ns(med(qd, 'ours', 3))} | ours/kernel IOPS ratio {statistics.median(ratios):.2f}x"
          f" (median of rounds; {min(ratios):.2f}x to {max(ratios):.2f}x)")
worst = max((v[4] for v in runs.values() if v[4] is not None), default=None)
if worst is None:
    print("host steal unknown (no host CPU times from run-guest)")
elif worst >= 5:
    print(f"WARNING: host steal reached {worst:.0f}%: the hypervisor took CPU from this host,"
          " so runs with high steal are not a clean comparison")
EOF2
