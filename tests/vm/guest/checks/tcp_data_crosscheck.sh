# NVMe/TCP check 2: bytes cross-checked both ways between our NVMe/TCP
# transport and the kernel's nvme-tcp initiator on the same subsystem of the
# Linux target (4096-byte blocks): what nvme-dio writes over TCP the kernel
# reads with O_DIRECT, and what the kernel writes with O_DIRECT nvme-dio reads
# (SHA-256), at two sizes each way: 4 KiB (a write that fits in the command
# capsule) and 1 MiB (larger than the target's in-capsule limit: R2T and
# H2CData). Then nvme-perf's --verify pattern both ways over 512 KiB: a
# sequential nvme-perf pass the kernel reads back and checks word for word,
# and the pattern written by the kernel, which `nvme-perf --check-pattern`
# finds whole.
set -eu
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../tcp.sh"
dio=$(need_bin nvme-dio)
perf=$(need_bin nvme-perf)

tcp_target_up
conn=$(tcp_kernel_connect)
set -- $conn
blk=/dev/$2
lbs=$(cat "/sys/block/$2/queue/logical_block_size")
log "kernel initiator: $blk, $lbs-byte blocks; ours: $TCP_DEV"

run_ours() {
    "$@" >/tmp/ours.out 2>/tmp/ours.err || {
        local status=$?
        cat /tmp/ours.err >&2
        fail "$* exited with status $status"
    }
}

# size offset-ours offset-kernel (bytes; multiples of 1 MiB)
for leg in "4096 2097152 3145728" "1048576 5242880 7340032"; do
    set -- $leg
    size=$1 at_ours=$2 at_kern=$3
    head -c "$size" /dev/urandom >/tmp/ours.bin
    head -c "$size" /dev/urandom >/tmp/kern.bin
    # Ours writes; the kernel reads.
    run_ours "$dio" "$TCP_DEV" write --offset "$at_ours" --input /tmp/ours.bin
    dd if="$blk" of=/tmp/kread.bin bs="$size" skip=$((at_ours / size)) count=1 iflag=direct status=none ||
        fail "the kernel cannot read $size bytes at $at_ours"
    [ "$(sha256sum </tmp/kread.bin)" = "$(sha256sum </tmp/ours.bin)" ] ||
        fail "$size bytes at $at_ours: the kernel reads other bytes than nvme-dio wrote over TCP"
    # The kernel writes; ours reads.
    dd if=/tmp/kern.bin of="$blk" bs="$size" seek=$((at_kern / size)) count=1 oflag=direct status=none ||
        fail "the kernel cannot write $size bytes at $at_kern"
    run_ours "$dio" "$TCP_DEV" read --offset "$at_kern" --length "$size" --output /tmp/oread.bin
    [ "$(sha256sum </tmp/oread.bin)" = "$(sha256sum </tmp/kern.bin)" ] ||
        fail "$size bytes at $at_kern: nvme-dio reads other bytes over TCP than the kernel wrote"
    log "$size bytes each way (ours at $at_ours, the kernel's at $at_kern): checksums equal"
done

# nvme-perf's pattern (tools/src/perf/pattern.rs), both ways over the first
# 512 KiB: ours writes it in one sequential pass of 64 KiB writes and the
# kernel checks every word of every block; the kernel writes it at a
# generation of its own and ours (--check-pattern) finds every block whole.
cat >/tmp/pattern.py <<'PY'
import struct, sys
M = (1 << 64) - 1
def mix(lba, gen, i):
    z = (lba * 0x9E3779B97F4A7C15 + (gen << 40) + i * 0xBF58476D1CE4E5B9) & M
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
    return z ^ (z >> 31)
def block(lba, gen, lbs):
    words = [lba, (0x4E564D45 << 32) | gen] + [mix(lba, gen, i) for i in range(2, lbs // 8)]
    return struct.pack("<%dQ" % len(words), *words)
cmd, path, lbs = sys.argv[1], sys.argv[2], int(sys.argv[3])
if cmd == "write":
    gen, blocks = int(sys.argv[4]), int(sys.argv[5])
    open(path, "wb").write(b"".join(block(lba, gen, lbs) for lba in range(blocks)))
else:
    data = open(path, "rb").read()
    bad = []
    for lba in range(len(data) // lbs):
        got = data[lba * lbs:(lba + 1) * lbs]
        w0, w1 = struct.unpack_from("<QQ", got)
        if w0 != lba or w1 >> 32 != 0x4E564D45 or got != block(lba, w1 & 0xFFFFFFFF, lbs):
            bad.append(lba)
    if bad:
        sys.exit("%d of %d blocks are not their LBA's pattern, first LBA %d" % (len(bad), len(data) // lbs, bad[0]))
    print("%d blocks, each its own LBA's pattern" % (len(data) // lbs))
PY
blocks=$((524288 / lbs))
run_ours "$perf" "$TCP_DEV" -w write -o 64k -q 4 --span 512k -d 8 -t 60 --verify --json
cp /tmp/ours.out /tmp/perf-write.json
json_get /tmp/perf-write.json 'j["errors"] == j["verify_failures"] == 0 and j["writes"] == 8 or sys.exit("nvme-perf: %s" % j)' >/dev/null ||
    fail "the nvme-perf pass did not write 512 KiB cleanly: $(cat /tmp/perf-write.json)"
dd if="$blk" of=/tmp/area bs=512k count=1 iflag=direct status=none || fail "the kernel cannot read the area"
python3 /tmp/pattern.py check /tmp/area "$lbs" >&2 || fail "the kernel reads other blocks than nvme-perf wrote over TCP"
log "nvme-perf wrote 512 KiB over TCP; the kernel reads back every block whole"

python3 /tmp/pattern.py write /tmp/kpattern "$lbs" 4242 $blocks
dd if=/tmp/kpattern of="$blk" bs=512k count=1 oflag=direct status=none || fail "the kernel cannot write the area"
run_ours "$perf" "$TCP_DEV" --check-pattern --span 512k -o 64k --json
cp /tmp/ours.out /tmp/check.json
json_get /tmp/check.json 'j["whole"] == j["blocks"] == '$blocks' and j["generations"] == 1 or sys.exit("nvme-perf --check-pattern: %s" % j)' >/dev/null ||
    fail "ours does not read the kernel's pattern back whole: $(cat /tmp/check.json)"
log "the kernel wrote the pattern over 512 KiB; nvme-perf --check-pattern over TCP finds all $blocks blocks whole"
