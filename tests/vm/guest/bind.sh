#!/bin/sh
# usage: bind.sh vfio-pci|nvme BDF
# Bind a PCI device in the test guest to vfio-pci (prints the group's node) or
# to the kernel nvme driver (prints the controller name, once /dev/<ctrl>n1 exists).
. "$(dirname "$0")/lib.sh"
[ $# -eq 2 ] || fail "usage: $0 vfio-pci|nvme BDF"
case "$1" in
    vfio-pci | vfio) bind_vfio "$2" ;;
    nvme) bind_nvme "$2" ;;
    *) fail "unknown driver $1 (vfio-pci or nvme)" ;;
esac
