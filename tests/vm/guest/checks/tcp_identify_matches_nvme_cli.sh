# NVMe/TCP check 1: nvme-identify on the Linux target's subsystem over our
# NVMe/TCP transport reports what nvme-cli reports for the same subsystem
# through the kernel's nvme-tcp initiator (`nvme id-ctrl -o json`, `nvme id-ns
# -o json`): vid, ssvid, sn, mn, fr, subnqn, nn, ioccsz and iorcsz (the capsule
# sizes the target gives a fabrics host; compared when our JSON carries them),
# cntrltype; nsze, ncap, nuse, flbas and the LBA format in use (data and
# metadata bytes). Not cntlid: each connection gets its own controller.
set -eu
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../tcp.sh"
identify=$(need_bin nvme-identify)

tcp_target_up
log "$(tcp_target_conf)"
conn=$(tcp_kernel_connect)
set -- $conn
ctrl=$1 blk=$2
log "kernel initiator: $ctrl ($(cat /sys/class/nvme/$ctrl/transport) $(cat /sys/class/nvme/$ctrl/address)), namespace 1 = /dev/$blk"
nvme id-ctrl "/dev/$ctrl" -o json >/tmp/k-ctrl.json || fail "nvme id-ctrl /dev/$ctrl failed"
nvme id-ns "/dev/$blk" -o json >/tmp/k-ns.json || fail "nvme id-ns /dev/$blk failed"
json_get /tmp/k-ctrl.json '"kernel id-ctrl: vid %#x sn %r mn %r fr %r subnqn %r nn %d ioccsz %d iorcsz %d" % (j["vid"], j["sn"].strip(), j["mn"].strip(), j["fr"].strip(), j["subnqn"], j["nn"], j["ioccsz"], j["iorcsz"])' >&2
json_get /tmp/k-ns.json '"kernel id-ns 1: nsze %d ncap %d nuse %d flbas %d, LBA format %s" % (j["nsze"], j["ncap"], j["nuse"], j["flbas"], j["lbafs"][j["flbas"] & 0xf])' >&2
[ "$(json_get /tmp/k-ctrl.json 'j["subnqn"]')" = "$TCP_NQN" ] ||
    fail "the kernel's controller reports subnqn $(json_get /tmp/k-ctrl.json 'j["subnqn"]'), not $TCP_NQN"

log "ours: nvme-identify $TCP_DEV --json"
"$identify" "$TCP_DEV" --json >/tmp/ours.json 2>/tmp/ours.err || {
    status=$?
    cat /tmp/ours.err >&2
    fail "nvme-identify $TCP_DEV exited with status $status"
}
python3 - <<'PY' || fail "nvme-identify over TCP disagrees with nvme-cli over the kernel's nvme-tcp (see above)"
import json, sys
kc = json.load(open("/tmp/k-ctrl.json"))
kn = json.load(open("/tmp/k-ns.json"))
ours = json.load(open("/tmp/ours.json"))
oc = ours["controller"]
bad, compared = [], []
def same(where, o, k):
    k = k.strip() if isinstance(k, str) else k
    compared.append(where)
    if o != k:
        bad.append(f"{where}: ours {o!r}, nvme-cli {k!r}")
for f in ["vid", "ssvid", "sn", "mn", "fr", "subnqn", "nn", "cntrltype"]:
    same(f"controller.{f}", oc.get(f), kc[f])
for f in ["ioccsz", "iorcsz"]:
    if f in oc:
        same(f"controller.{f}", oc[f], kc[f])
nss = [n for n in ours["namespaces"] if n.get("nsid") == 1]
if len(nss) != 1:
    bad.append(f"namespace 1: ours lists namespaces {[n.get('nsid') for n in ours['namespaces']]}")
else:
    n = nss[0]
    for f in ["nsze", "ncap", "nuse", "flbas"]:
        same(f"ns 1 {f}", n.get(f), kn[f])
    fmt = kn["lbafs"][kn["flbas"] & 0xf]
    same("ns 1 LBA bytes", n.get("lba_bytes"), 1 << fmt["ds"])
    same("ns 1 metadata bytes", n.get("metadata_bytes"), fmt["ms"])
print(f"compared {len(compared)} fields: {' '.join(compared)}")
print(f"ours: sn {oc.get('sn')!r} mn {oc.get('mn')!r} fr {oc.get('fr')!r} subnqn {oc.get('subnqn')!r} cntlid {oc.get('cntlid')} (kernel's cntlid {kc['cntlid']})")
for b in bad:
    print("MISMATCH", b)
sys.exit(1 if bad else 0)
PY
