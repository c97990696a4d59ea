# Check 1: nvme-identify through vfio-pci reports what the kernel's
# `nvme id-ctrl -o json` / `nvme id-ns -o json` report, for every controller
# and namespace of the guest: serial, model, firmware, mdts, nn, vwc, oncs;
# nsze, ncap and the LBA size.
set -eu
. "$(dirname "$0")/../lib.sh"
identify=$(need_bin nvme-identify)

i=0
while [ -e "/sys/bus/pci/devices/$(bdf_of $i)" ]; do
    bdf=$(bdf_of $i)
    ctrl=$(bind_nvme "$bdf")
    nvme id-ctrl "/dev/$ctrl" -o json >/tmp/k-ctrl-$i.json
    : >/tmp/k-ns-$i.list
    for blk in $(namespaces_of "$bdf"); do
        nsid=$(cat "/sys/block/$blk/nsid")
        nvme id-ns "/dev/$blk" -o json >"/tmp/k-ns-$i-$nsid.json"
        echo "$nsid" >>/tmp/k-ns-$i.list
    done
    bind_vfio "$bdf" >/dev/null
    "$identify" "$bdf" --json >/tmp/ours-$i.json || fail "nvme-identify $bdf exited with status $?"
    python3 - "$i" <<'PY' || fail "nvme-identify $bdf disagrees with the kernel driver (see above)"
import json, sys
i = sys.argv[1]
kc = json.load(open(f"/tmp/k-ctrl-{i}.json"))
ours = json.load(open(f"/tmp/ours-{i}.json"))
oc = ours["controller"]
bad = []
for f in ["sn", "mn", "fr", "mdts", "nn", "vwc", "oncs"]:
    k = kc[f].strip() if isinstance(kc[f], str) else kc[f]
    if oc.get(f) != k:
        bad.append(f"controller.{f}: ours {oc.get(f)!r}, kernel {k!r}")
want = sorted(int(l) for l in open(f"/tmp/k-ns-{i}.list"))
got = sorted(n["nsid"] for n in ours["namespaces"])
if got != want:
    bad.append(f"active namespaces: ours {got}, kernel {want}")
for n in ours["namespaces"]:
    try:
        kn = json.load(open(f"/tmp/k-ns-{i}-{n['nsid']}.json"))
    except FileNotFoundError:
        continue
    for f in ["nsze", "ncap"]:
        if n.get(f) != kn[f]:
            bad.append(f"ns {n['nsid']} {f}: ours {n.get(f)}, kernel {kn[f]}")
    lba = 1 << kn["lbafs"][kn["flbas"] & 0xf]["ds"]
    if n.get("lba_bytes") != lba:
        bad.append(f"ns {n['nsid']} LBA size: ours {n.get('lba_bytes')}, kernel {lba}")
print(f"controller {i}: sn {oc['sn']!r} mdts {oc['mdts']} namespaces {got}")
for b in bad:
    print("MISMATCH", b)
sys.exit(1 if bad else 0)
PY
    i=$((i + 1))
done
[ $i -gt 0 ] || fail "the guest has no NVMe controller"
