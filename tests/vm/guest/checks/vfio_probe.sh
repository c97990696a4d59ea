# vfio-ioctls in the guest: the probe opens controller 0 through vfio-pci,
# reads CAP/VS through the BAR0 mapping (same value as pread on the device fd),
# and reads the configured serial back by a DMA Identify.
set -eu
. "$(dirname "$0")/../lib.sh"
bdf=$(bdf_of 0)
serial=$(conf_of 0 serial)
probe=$(need_bin vfio-probe)

bind_vfio "$bdf" >/dev/null
out=$("$probe" "$bdf") || fail "vfio-probe failed: $out"
echo "$out"
val() { echo "$out" | awk -F= -v k="$1" '$1 == k { print $2 }'; }

cap=$(val cap)
[ "$cap" = "$(val cap_pread)" ] || fail "CAP through mmap ($cap) differs from pread ($(val cap_pread))"
[ $(((cap >> 37) & 1)) -eq 1 ] || fail "CAP.CSS ($cap) lacks the NVM command set"
vs=$(val vs)
[ $((vs >> 16)) -ge 1 ] || fail "VS $vs is not an NVMe 1.x or later version"
[ $(($(val command_after) & 0x6)) -eq 6 ] || fail "PCI COMMAND $(val command_after) lacks memory space + bus master"
[ "$(val serial)" = "$serial" ] || fail "Identify by DMA gave serial '$(val serial)', expected '$serial'"
[ -n "$(val iova_ranges)" ] || fail "VFIO_IOMMU_GET_INFO reported no IOVA range"

# The controller is left usable by the kernel driver.
ctrl=$(bind_nvme "$bdf")
log "after the probe: /dev/${ctrl}n1 is back"
