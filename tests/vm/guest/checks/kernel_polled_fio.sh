# Measurement (reported, not asserted): the kernel driver's polled 4 KiB
# random reads at QD1 and QD32 with fio io_uring --hipri (the guest boots with
# nvme.poll_queues=1). Asserted: the namespace supports polling, fio reports
# no error, and the I/O queues' interrupt counts barely move (completions
# were polled). Results: $NVME_VM_XFER/perf-kernel.txt.
set -eu
. "$(dirname "$0")/../lib.sh"

c=$(bind_nvme "$(bdf_of 0)")
dev=/dev/${c}n1
[ "$(cat /sys/block/${c}n1/queue/io_poll)" = 1 ] || fail "$dev has no poll queue (boot with nvme.poll_queues=1)"
# Data to read: the namespace is sparse and fresh.
dd if=/dev/urandom of="$dev" bs=1M count=64 oflag=direct status=none

irqs() { awk -v c="${c}q" '$NF ~ "^" c "[1-9]" { for (i = 2; i < NF - 2; i++) s += $i } END { print s + 0 }' /proc/interrupts; }
for qd in 1 32; do
    before=$(irqs)
    fio --name=randread --filename="$dev" --ioengine=io_uring --hipri --direct=1 --rw=randread \
        --bs=4k --iodepth=$qd --size=64M --runtime=2 --time_based --output-format=json >/tmp/fio.json ||
        fail "fio QD$qd failed"
    after=$(irqs)
    ios=$(json_get /tmp/fio.json 'j["jobs"][0]["read"]["total_ios"]')
    errs=$(json_get /tmp/fio.json 'j["jobs"][0]["error"]')
    iops=$(json_get /tmp/fio.json 'round(j["jobs"][0]["read"]["iops"])')
    lat=$(json_get /tmp/fio.json 'round(j["jobs"][0]["read"]["clat_ns"]["mean"] / 1000, 1)')
    [ "$errs" -eq 0 ] || fail "fio QD$qd reported error $errs"
    [ "$ios" -gt 0 ] || fail "fio QD$qd completed no I/O"
    [ $((after - before)) -le $((ios / 100 + 10)) ] ||
        fail "QD$qd: $((after - before)) I/O queue interrupts for $ios polled reads"
    echo "kernel fio io_uring --hipri randread 4k QD$qd: $iops IOPS, mean completion latency $lat us, $((after - before)) interrupts for $ios I/Os" |
        tee -a "$NVME_VM_XFER/perf-kernel.txt"
done
