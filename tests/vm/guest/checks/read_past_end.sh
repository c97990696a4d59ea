# Check 7: a read of the first block past the end of a namespace, sent by our
# driver, fails with the spec's status by name: LBA Out of Range (SCT 0, SC
# 0x80), the status the kernel driver reports for it (kernel_lba_out_of_range).
set -eu
. "$(dirname "$0")/../lib.sh"
bdf=$(bdf_of 0)
tool=$(need_bin nvme-e2e-device)

bind_vfio "$bdf" >/dev/null
for ns in 1 2; do
    out=$("$tool" "$bdf" read-past-end $ns) || fail "ns $ns: $out"
    echo "$out"
    echo "$out" | grep -q '^status=LBA Out of Range (SCT 0x0, SC 0x80' ||
        fail "ns $ns: expected status LBA Out of Range (SCT 0x0, SC 0x80)"
    echo "$out" | grep -q '^error=.*LBA Out of Range' || fail "ns $ns: the error message does not name the status"
done
