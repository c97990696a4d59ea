# Shell helpers for checks that run inside the test guest (sourced; POSIX sh
# plus `local`, which bash, dash and busybox sh all have). Helpers keep their
# variables local so they never clobber the caller's.
#
# A check fails by exiting non-zero; `fail` prints the reason first. The
# controllers of run-guest's --nvme options are at 0000:00:04.0, 05.0, ...

# host_cpu: the host's aggregate CPU times ("cpu user nice system idle iowait
# irq softirq steal ...", from its /proc/stat), as run-guest publishes them
# every half second; empty when it does not.
host_cpu() { cat "$NVME_VM_XFER/host-cpu" 2>/dev/null || true; }

# host_steal BEFORE AFTER: percentage of the host's CPU time between two
# host_cpu lines that its hypervisor gave to others (steal time), or "-" when
# either line is missing. On a shared host this is what makes one run slower
# than the next.
host_steal() {
    [ -n "$1" ] && [ -n "$2" ] || {
        echo -
        return 0
    }
    echo "$1 $2" | awk '{ n = NF / 2; for (i = 2; i <= 9; i++) t += $(n + i) - $i
        if (t > 0) printf "%.0f\n", 100 * ($(n + 9) - $9) / t; else print "-" }'
}

# BDF of controller N (0-based) as given to run-guest.
bdf_of() { printf '0000:00:%02x.0\n' $((4 + ${1:-0})); }

log() { echo "$*" >&2; }

# alternate_rounds N: the measurement's rounds 1..N, each running the caller's
# `kernel R` and `ours R`: the kernel first in odd rounds, ours first in even ones,
# so that neither side always runs second on a warmed-up system.
alternate_rounds() {
    local r=1
    while [ $r -le "$1" ]; do
        if [ $((r % 2)) -eq 1 ]; then
            kernel $r
            ours $r
        else
            ours $r
            kernel $r
        fi
        r=$((r + 1))
    done
}
fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# wait_for COMMAND...: wait up to 30 s for COMMAND to succeed (emulation on a
# busy host is slow).
wait_for() {
    local n=0
    while ! "$@"; do
        n=$((n + 1))
        [ "$n" -le 600 ] || return 1
        sleep 0.05
    done
}

# Name of the driver bound to BDF, or "none".
driver_of() {
    if [ -e "/sys/bus/pci/devices/$1/driver" ]; then
        basename "$(readlink -f "/sys/bus/pci/devices/$1/driver")"
    else
        echo none
    fi
}

# IOMMU group number of BDF.
iommu_group_of() {
    [ -e "/sys/bus/pci/devices/$1/iommu_group" ] || fail "$1 has no IOMMU group (is intel_iommu=on set?)"
    basename "$(readlink -f "/sys/bus/pci/devices/$1/iommu_group")"
}

# bind_to DRIVER BDF: bind BDF to DRIVER (vfio-pci or nvme) through
# driver_override, unbinding it from its current driver first.
bind_to() {
    local drv=$1 dev=$2
    [ -e "/sys/bus/pci/devices/$dev" ] || fail "no PCI device $dev"
    [ "$(driver_of "$dev")" = "$drv" ] && return 0
    echo "$drv" >"/sys/bus/pci/devices/$dev/driver_override"
    modprobe "$drv" || fail "modprobe $drv failed"
    if [ -e "/sys/bus/pci/devices/$dev/driver" ]; then
        echo "$dev" >"/sys/bus/pci/devices/$dev/driver/unbind"
    fi
    # Loading the module may already have bound it; drivers_probe is then a no-op.
    [ "$(driver_of "$dev")" = "$drv" ] || echo "$dev" >/sys/bus/pci/drivers_probe
    [ "$(driver_of "$dev")" = "$drv" ] || fail "$dev did not bind to $drv (bound to $(driver_of "$dev"))"
}

# bind_vfio BDF: bind to vfio-pci and print the group's device node.
bind_vfio() {
    local node
    bind_to vfio-pci "$1"
    node="/dev/vfio/$(iommu_group_of "$1")"
    wait_for test -c "$node" || fail "$node did not appear after binding $1 to vfio-pci"
    echo "$node"
}

# bind_nvme BDF: bind to the kernel nvme driver, wait until namespace 1's
# block device exists (the driver probes asynchronously) and print the
# controller's name (nvme0, ...).
bind_nvme() {
    local ctrl
    bind_to nvme "$1"
    wait_for controller_of "$1" >/dev/null || fail "$1 bound to nvme but no controller appeared"
    ctrl=$(controller_of "$1")
    wait_for test -b "/dev/${ctrl}n1" || fail "/dev/${ctrl}n1 did not appear after binding $1 to nvme"
    wait_for is_live "$ctrl" || fail "$ctrl did not reach the live state"
    echo "$ctrl"
}

# Name of the kernel's controller (nvme0, ...) at BDF; fails when there is none.
controller_of() {
    local c
    c=$(ls "/sys/bus/pci/devices/$1/nvme" 2>/dev/null | head -n 1)
    [ -n "$c" ] && echo "$c"
}

is_live() { [ "$(cat "/sys/class/nvme/$1/state" 2>/dev/null)" = live ]; }

# Block devices (nvme0n1 ...) of the controller bound to the kernel driver at BDF.
namespaces_of() {
    ls "/sys/bus/pci/devices/$1/nvme/"*/ | grep -E '^nvme[0-9]+n[0-9]+$'
}

# Directory of host-built binaries (set by the test; defaults to target/debug).
bin_dir() { echo "${NVME_E2E_BIN:-$(pwd)/target/debug}"; }

# need_bin NAME: print the path of a host-built binary or fail with a hint.
need_bin() {
    local p
    p="$(bin_dir)/$1"
    [ -x "$p" ] || fail "$p is missing: build it on the host first (cargo build --bins)"
    echo "$p"
}

# conf_of N KEY: the value of KEY (serial, size, mdts, ns2, ...) in the spec
# run-guest was given for controller N; empty when unset.
conf_of() {
    local bdf spec
    bdf=$(bdf_of "$1")
    spec=$(awk -v b="$bdf" '$1 == b { print $2 }' "${NVME_VM_XFER:?}/controllers")
    echo "$spec" | tr ',' '\n' | awk -F= -v k="$2" '$1 == k { print substr($0, length(k) + 2) }'
}

# json_get FILE|- EXPR: evaluate a Python expression on the parsed JSON `j`.
json_get() {
    python3 -c 'import json,sys; j=json.load(open(sys.argv[1]) if sys.argv[1] != "-" else sys.stdin); print(eval(sys.argv[2]))' "$@"
}

# ns_ids N: IDs of the extra namespaces (nsN=... in run-guest's spec) of controller N.
ns_ids() {
    local bdf
    bdf=$(bdf_of "$1")
    awk -v b="$bdf" '$1 == b { print $2 }' "${NVME_VM_XFER:?}/controllers" | tr ',' '\n' |
        sed -n 's/^ns\([0-9][0-9]*\)=.*/\1/p'
}

# ns_prop N NSID KEY: how namespace NSID of controller N was configured: KEY `lbs`
# is its LBA size, any other KEY a QEMU nvme-ns property (ms, mset, pi, pil, eui64,
# ...), 0 when not set.
ns_prop() {
    conf_of "$1" "ns$2" | tr ':' '\n' | awk -v k="$3" '
        NR == 1 && k == "lbs" { v = $0 }
        NR > 1 && index($0, k "=") == 1 { v = substr($0, length(k) + 2) }
        END { print (v == "" ? 0 : v) }'
}
