# Shell helpers for the NVMe/TCP checks (sourced after lib.sh): a Linux NVMe
# target (nvmet, nvmet-tcp) configured through configfs inside the guest, and
# the kernel's NVMe/TCP initiator (nvme-tcp, through nvme-cli) connected to it
# as the second opinion. Every helper is idempotent, so each check sets up what
# it needs whether or not an earlier check of the same boot did.
#
# The target: subsystem $TCP_NQN (any host allowed), namespace 1 backed by a
# $TCP_NS_MIB MiB file on the guest's tmpfs (buffered I/O: tmpfs has no
# O_DIRECT; 4096-byte blocks, tmpfs's block size), port $TCP_PORTID on TCP
# $TCP_ADDR:$TCP_SVCID.

TCP_NQN=nqn.2026-12.io.e2e:tcp
TCP_ADDR=127.0.0.1
TCP_SVCID=4420
TCP_PORTID=1
TCP_NS_MIB=64
TCP_NS_FILE=/tmp/nvmet/ns1.img
NVMET=/sys/kernel/config/nvmet

# Our device names for the subsystem and for the discovery controller.
TCP_DEV="tcp://$TCP_ADDR:$TCP_SVCID/$TCP_NQN"
TCP_DISC_DEV="tcp://$TCP_ADDR:$TCP_SVCID"

# Directory of the subsystem's link in the port.
tcp_port_link() { echo "$NVMET/ports/$TCP_PORTID/subsystems/$TCP_NQN"; }

# tcp_target_up: loopback up, modules loaded, configfs mounted, subsystem,
# namespace and port configured and linked.
tcp_target_up() {
    local s=$NVMET/subsystems/$TCP_NQN p=$NVMET/ports/$TCP_PORTID
    ip link set lo up 2>/dev/null || busybox ip link set lo up || fail "cannot bring the loopback interface up"
    # nvmet before the mount: /sys/kernel/config appears when configfs loads.
    modprobe nvmet || fail "modprobe nvmet failed"
    modprobe nvmet-tcp || fail "modprobe nvmet-tcp failed"
    modprobe nvme-tcp || fail "modprobe nvme-tcp failed"
    grep -q ' /sys/kernel/config configfs ' /proc/mounts ||
        mount -t configfs none /sys/kernel/config || fail "mounting configfs failed"
    [ -d "$NVMET" ] || fail "$NVMET is missing after loading nvmet"
    if [ ! -d "$s" ]; then
        mkdir -p "$(dirname "$TCP_NS_FILE")"
        truncate -s "${TCP_NS_MIB}M" "$TCP_NS_FILE"
        mkdir "$s" || fail "cannot create subsystem $TCP_NQN"
        echo 1 >"$s/attr_allow_any_host"
        mkdir "$s/namespaces/1"
        echo "$TCP_NS_FILE" >"$s/namespaces/1/device_path"
        echo 1 >"$s/namespaces/1/buffered_io"
        echo 1 >"$s/namespaces/1/enable" || fail "enabling namespace 1 (file $TCP_NS_FILE) failed"
    fi
    if [ ! -d "$p" ]; then
        mkdir "$p" || fail "cannot create port $TCP_PORTID"
        echo tcp >"$p/addr_trtype"
        echo ipv4 >"$p/addr_adrfam"
        echo "$TCP_ADDR" >"$p/addr_traddr"
        echo "$TCP_SVCID" >"$p/addr_trsvcid"
    fi
    [ -e "$(tcp_port_link)" ] || ln -s "$s" "$(tcp_port_link)" ||
        fail "linking $TCP_NQN into port $TCP_PORTID failed"
}

# tcp_target_conf: one line describing the configured target.
tcp_target_conf() {
    local s=$NVMET/subsystems/$TCP_NQN
    echo "nvmet subsystem $TCP_NQN (serial $(cat "$s/attr_serial"), model $(cat "$s/attr_model" 2>/dev/null || echo '?')," \
        "version $(cat "$s/attr_version")), namespace 1 = $TCP_NS_FILE ($TCP_NS_MIB MiB, buffered_io" \
        "$(cat "$s/namespaces/1/buffered_io")), port $TCP_PORTID $(cat "$NVMET/ports/$TCP_PORTID/addr_trtype")" \
        "$(cat "$NVMET/ports/$TCP_PORTID/addr_traddr"):$(cat "$NVMET/ports/$TCP_PORTID/addr_trsvcid")"
}

# tcp_kernel_ctrl_name: the kernel's live controller (nvme0, ...) connected to
# $TCP_NQN over TCP, if any.
tcp_kernel_ctrl_name() {
    local c
    for c in /sys/class/nvme/nvme*; do
        [ -e "$c/subsysnqn" ] || continue
        [ "$(cat "$c/transport")" = tcp ] || continue
        [ "$(cat "$c/subsysnqn")" = "$TCP_NQN" ] || continue
        [ "$(cat "$c/state")" = live ] || continue
        basename "$c"
        return 0
    done
    return 1
}

# tcp_kernel_blk CTRL: namespace 1's block device name of controller CTRL
# (nvme0n1, or the multipath head's name when native multipath is on).
tcp_kernel_blk() {
    local b
    # Without multipath the namespace sits under the controller, with it under
    # the subsystem (the controller holds only the hidden path nvmeXcYnZ).
    for b in /sys/class/nvme/"$1"/nvme*n1 /sys/class/nvme-subsystem/*/nvme*n1; do
        [ -e "$b" ] || continue
        case "$(basename "$b")" in *c*n*) continue ;; esac
        [ -e "$b/nsid" ] || continue
        # The head of another subsystem's namespace does not count.
        if [ -e "$(dirname "$b")/subsysnqn" ] &&
            [ "$(cat "$(dirname "$b")/subsysnqn")" != "$TCP_NQN" ]; then
            continue
        fi
        [ "$(cat "$b/nsid")" = 1 ] || continue
        basename "$b"
        return 0
    done
    return 1
}

# tcp_kernel_connect: connect the kernel initiator to $TCP_NQN unless it is
# already; wait for the controller to be live and namespace 1's block device;
# print "CTRL BLOCKDEV" (nvme0 nvme0n1).
tcp_kernel_connect() {
    local c b
    if ! c=$(tcp_kernel_ctrl_name); then
        nvme connect -t tcp -a "$TCP_ADDR" -s "$TCP_SVCID" -n "$TCP_NQN" >&2 ||
            fail "nvme connect -t tcp -a $TCP_ADDR -s $TCP_SVCID -n $TCP_NQN failed"
        wait_for tcp_kernel_ctrl_name >/dev/null || fail "no live kernel controller for $TCP_NQN after nvme connect"
        c=$(tcp_kernel_ctrl_name)
    fi
    wait_for tcp_kernel_blk "$c" >/dev/null || fail "the kernel's $c has no block device for namespace 1"
    b=$(tcp_kernel_blk "$c")
    wait_for test -b "/dev/$b" || fail "/dev/$b did not appear"
    echo "$c $b"
}

# tcp_kernel_disconnect: disconnect the kernel initiator from $TCP_NQN (no-op
# when it is not connected).
tcp_kernel_disconnect() {
    nvme disconnect -n "$TCP_NQN" >/dev/null 2>&1 || true
    local n=0
    while tcp_kernel_any_ctrl; do
        n=$((n + 1))
        [ $n -le 600 ] || fail "the kernel controller for $TCP_NQN did not go away after nvme disconnect"
        sleep 0.05
    done
}

# tcp_kernel_any_ctrl: whether the kernel has a controller (in any state) for $TCP_NQN.
tcp_kernel_any_ctrl() {
    local c
    for c in /sys/class/nvme/nvme*; do
        [ -e "$c/subsysnqn" ] && [ "$(cat "$c/subsysnqn")" = "$TCP_NQN" ] && return 0
    done
    return 1
}
