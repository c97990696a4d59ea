# Reference for our driver's status reporting: a read that starts at the
# first LBA past the end of namespace 1 completes with the spec status
# "LBA Out of Range" (SCT 0, SC 0x80) through the kernel driver.
set -eu
. "$(dirname "$0")/../lib.sh"

c=$(bind_nvme "$(bdf_of 0)")
nsze=$(nvme id-ns "/dev/${c}n1" -o json | json_get - 'j["nsze"]')
nvme read "/dev/${c}n1" --start-block=$((nsze - 1)) --block-count=0 --data-size=512 --data=/tmp/last >/dev/null ||
    fail "reading the last LBA ($((nsze - 1))) failed"
if nvme read "/dev/${c}n1" --start-block="$nsze" --block-count=0 --data-size=512 --data=/tmp/past 2>/tmp/err; then
    fail "reading LBA $nsze (one past the end) succeeded"
fi
cat /tmp/err
grep -q "LBA Out of Range" /tmp/err || fail "expected 'LBA Out of Range', got: $(cat /tmp/err)"
