# NVMe/TCP check 5: the target's port goes away in the middle of a verified
# nvme-perf run over TCP (the subsystem's link in the port is removed from
# configfs, which deletes its controllers, closes their connections and, as it
# was the port's only subsystem, stops the listener). nvme-perf must end on its
# own within 60 s (it runs under `timeout 60`), with a non-zero exit status
# that is not a signal's, and a message on stderr that names the connection.
# The link is restored afterwards (also when the check fails) and the
# kernel's initiator reaches the subsystem again.
set -eu
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../tcp.sh"
perf=$(need_bin nvme-perf)
limit=60

tcp_target_up
# The kernel initiator would otherwise keep reconnecting to the dead port.
tcp_kernel_disconnect
restore() { tcp_target_up; }
trap restore EXIT

ms() { echo $(($(date +%s%N) / 1000000)); }
start=$(ms)
timeout "$limit" "$perf" "$TCP_DEV" -w randrw -o 4k -q 16 --qpairs 2 -t 45 --verify --json >/tmp/kill.json 2>/tmp/kill.err &
pid=$!
sleep 2
kill -0 $pid 2>/dev/null || {
    status=0
    wait $pid || status=$?
    cat /tmp/kill.err >&2
    fail "nvme-perf ended (status $status) before the port went away"
}
rm "$(tcp_port_link)" || fail "cannot remove the subsystem's link from port $TCP_PORTID"
cut=$(ms)
log "port $TCP_PORTID: subsystem link removed $((cut - start)) ms after nvme-perf started"
status=0
wait $pid || status=$?
end=$(ms)
log "nvme-perf exited with status $status $((end - cut)) ms after the link was removed; its stderr:"
sed 's/^/    /' /tmp/kill.err >&2
[ $status -ne 124 ] || fail "nvme-perf was still running $limit s after it started: a hang, killed by timeout"
[ $status -lt 128 ] || fail "nvme-perf died of signal $((status - 128)) instead of exiting with an error"
[ $status -ne 0 ] || fail "nvme-perf exited 0 although the port went away in the middle of its run"
grep -qi connect /tmp/kill.err || fail "nvme-perf's stderr does not name the connection (no 'connect' in it)"
# What the host saw: the port no longer listens.
if (exec 3<>"/dev/tcp/$TCP_ADDR/$TCP_SVCID") 2>/dev/null; then
    fail "$TCP_ADDR:$TCP_SVCID still accepts connections after the link was removed"
fi
log "$TCP_ADDR:$TCP_SVCID refuses connections while the port has no subsystem"

# Back: link restored, the kernel's initiator reaches the subsystem again.
trap - EXIT
restore
conn=$(tcp_kernel_connect)
set -- $conn
log "link restored: the kernel's initiator is connected again ($1, /dev/$2)"
