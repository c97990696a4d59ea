# nvme-setup on a real kernel: `bind` moves controller 0 to vfio-pci (group
# node present), `diagnose` then finds nothing in the way, `unbind` returns it
# to the kernel nvme driver, which serves its namespace again.
set -eu
. "$(dirname "$0")/../lib.sh"
bdf=$(bdf_of 0)
setup=$(need_bin nvme-setup)

bind_nvme "$bdf" >/dev/null
"$setup" bind "$bdf" || fail "nvme-setup bind $bdf exited with status $?"
[ "$(driver_of "$bdf")" = vfio-pci ] || fail "after nvme-setup bind, $bdf is on $(driver_of "$bdf")"
[ -c "/dev/vfio/$(iommu_group_of "$bdf")" ] || fail "no /dev/vfio/$(iommu_group_of "$bdf") after nvme-setup bind"
"$setup" diagnose "$bdf" || fail "nvme-setup diagnose $bdf failed on a bound controller"
"$setup" unbind "$bdf" || fail "nvme-setup unbind $bdf exited with status $?"
ctrl=$(bind_nvme "$bdf")
dd if="/dev/${ctrl}n1" of=/dev/null bs=64k count=16 iflag=direct status=none ||
    fail "the kernel driver cannot read /dev/${ctrl}n1 after nvme-setup unbind"
