# Every controller and namespace of the formats guest: nvme-identify --json through
# vfio-pci reports what nvme-cli reports through the kernel driver's controller
# device (`nvme id-ctrl`, `nvme id-ns -n N`, `nvme ns-descs -n N`, `-o json`), field
# for field: the Identify Controller fields (mdts, sgls, fuses among them), every
# Identify Namespace field both print (every LBA format's ms, ds and rp; flbas, mc,
# dpc, dps, nguid, eui64, ...) and every identification descriptor. Our decoded
# fields (lba_bytes, metadata_bytes, extended_lba, transfer_block_bytes, pi_type,
# pi_location, command_set) agree with those raw fields and with the format the
# namespace was configured with (QEMU's nvme-ns lbs, ms, mset, pi, pil, eui64, uuid).
set -eu
. "$(dirname "$0")/../lib.sh"
identify=$(need_bin nvme-identify)

i=0
while [ -e "/sys/bus/pci/devices/$(bdf_of $i)" ]; do
    bdf=$(bdf_of $i)
    ctrl=$(bind_nvme "$bdf")
    nvme id-ctrl "/dev/$ctrl" -o json >/tmp/fk-ctrl-$i.json
    for nsid in 1 $(ns_ids $i); do
        nvme id-ns "/dev/$ctrl" -n "$nsid" -o json >/tmp/fk-ns-$i-$nsid.json ||
            fail "nvme id-ns -n $nsid on $ctrl failed"
        nvme ns-descs "/dev/$ctrl" -n "$nsid" -o json >/tmp/fk-descs-$i-$nsid.json ||
            fail "nvme ns-descs -n $nsid on $ctrl failed"
        # The NVM Command Set Identify Namespace (CNS 05h): empty when not offered.
        nvme nvm-id-ns "/dev/$ctrl" -n "$nsid" -o json >/tmp/fk-nvm-$i-$nsid.json 2>/dev/null ||
            : >/tmp/fk-nvm-$i-$nsid.json
    done
    bind_vfio "$bdf" >/dev/null
    "$identify" "$bdf" --json >/tmp/fours-$i.json || fail "nvme-identify $bdf exited with status $?"
    python3 - "$i" "$bdf" "$NVME_VM_XFER/controllers" <<'PY' || fail "nvme-identify $bdf disagrees with nvme-cli (see above)"
import json, sys

i, bdf, conf_file = sys.argv[1], sys.argv[2], sys.argv[3]
bad = []

def same(where, ours, theirs):
    if isinstance(theirs, str):
        theirs = theirs.strip()
        if isinstance(ours, int) and theirs.lstrip("-").isdigit():
            theirs = int(theirs)
    if ours != theirs:
        bad.append(f"{where}: ours {ours!r}, nvme-cli {theirs!r}")

# The configuration run-guest was given: {nsid: {"lbs": ..., "ms": ..., ...}}.
spec = next(l.split()[1] for l in open(conf_file) if l.split()[0] == bdf)
configured = {1: {"lbs": "512"}}
for kv in spec.split(","):
    k, _, v = kv.partition("=")
    if k.startswith("ns") and k[2:].isdigit():
        parts = v.split(":")
        configured[int(k[2:])] = dict([("lbs", parts[0])] + [p.split("=", 1) for p in parts[1:]])

ours = json.load(open(f"/tmp/fours-{i}.json"))
kc = json.load(open(f"/tmp/fk-ctrl-{i}.json"))
oc = ours["controller"]
for f in ["vid", "ssvid", "sn", "mn", "fr", "rab", "ieee", "cmic", "mdts", "cntlid", "ver",
          "rtd3r", "rtd3e", "oaes", "ctratt", "cntrltype", "oacs", "acl", "aerl", "frmw", "lpa",
          "elpe", "npss", "wctemp", "cctemp", "tnvmcap", "unvmcap", "sqes", "cqes", "maxcmd",
          "nn", "oncs", "fuses", "fna", "vwc", "awun", "awupf", "sgls", "subnqn"]:
    same(f"controller.{f}", oc.get(f), kc[f])
print(f"controller {i} ({oc['sn']}): mdts {kc['mdts']} (x CAP.MPSMIN {oc['cap']['mpsmin_bytes']} B),"
      f" sgls {kc['sgls']:#x}, fuses {kc['fuses']:#x}, oncs {kc['oncs']:#x}")

got = sorted(n["nsid"] for n in ours["namespaces"])
if got != sorted(configured):
    bad.append(f"active namespaces: ours {got}, configured {sorted(configured)}")
for n in ours["namespaces"]:
    nsid = n["nsid"]
    kn = json.load(open(f"/tmp/fk-ns-{i}-{nsid}.json"))
    for f in ["nsze", "ncap", "nuse", "nsfeat", "nlbaf", "flbas", "mc", "dpc", "dps", "nmic",
              "rescap", "dlfeat", "nawun", "nawupf", "noiob", "nvmcap", "nguid", "eui64"]:
        same(f"ns {nsid} {f}", n.get(f), kn[f])
    if len(n["lbafs"]) != len(kn["lbafs"]):
        bad.append(f"ns {nsid}: ours {len(n['lbafs'])} LBA formats, nvme-cli {len(kn['lbafs'])}")
    for x, (o, k) in enumerate(zip(n["lbafs"], kn["lbafs"])):
        for f in ["ms", "ds", "rp"]:
            same(f"ns {nsid} lbafs[{x}].{f}", o[f], k[f])

    # The NVM Command Set Identify Namespace: guard format (PIF) and storage tag size
    # of every LBA format, read by both sides when CTRATT.ELBAS says it exists.
    elbas = bool(kc["ctratt"] & (1 << 15))
    raw = open(f"/tmp/fk-nvm-{i}-{nsid}.json").read().strip()
    if elbas:
        if not raw:
            bad.append(f"ns {nsid}: CTRATT.ELBAS is set and nvme nvm-id-ns failed")
        elif n.get("elbafs") is None:
            bad.append(f"ns {nsid}: CTRATT.ELBAS is set and we report no elbafs")
        else:
            kv = json.loads(raw)
            for f in ["lbstm", "pic"]:
                same(f"ns {nsid} {f}", n.get(f), kv[f])
            if len(n["elbafs"]) < len(kn["lbafs"]) or len(kv["elbafs"]) < len(kn["lbafs"]):
                bad.append(f"ns {nsid}: elbafs ours {len(n['elbafs'])}, nvme-cli {len(kv['elbafs'])}")
            for x in range(len(kn["lbafs"])):
                for f in ["sts", "pif"]:
                    same(f"ns {nsid} elbafs[{x}].{f}", n["elbafs"][x][f], kv["elbafs"][x][f])

    # Our decoded fields against the raw ones (FLBAS bits 3:0 and 6:5 index the format).
    flbas, dps = kn["flbas"], kn["dps"]
    lf = kn["lbafs"][(flbas & 0xF) | ((flbas >> 5) & 0x3) << 4]
    ms, lba, ext = lf["ms"], 1 << lf["ds"], bool(flbas & 0x10)
    pit = dps & 0x7
    want = {
        "lba_bytes": lba,
        "metadata_bytes": ms,
        "extended_lba": ext if ms else None,
        "transfer_block_bytes": lba + ms if ms and ext else lba,
        "pi_type": pit,
        "pi_location": ("first" if dps & 0x8 else "last") if pit else None,
    }
    if pit and elbas and raw:
        pif = json.loads(raw)["elbafs"][(flbas & 0xF) | ((flbas >> 5) & 0x3) << 4]["pif"]
        want["pi_guard_bits"] = {0: 16, 1: 32, 2: 64}.get(pif)
    for f, v in want.items():
        if n.get(f) != v:
            bad.append(f"ns {nsid} {f}: ours {n.get(f)!r}, from the raw fields {v!r}")

    # ... and against the configuration.
    c = configured[nsid]
    cfg = {
        "lba_bytes": int(c["lbs"]),
        "metadata_bytes": int(c.get("ms", 0)),
        "extended_lba": (c.get("mset", "0") == "1") if int(c.get("ms", 0)) else None,
        "pi_type": int(c.get("pi", 0)),
        "pi_location": ("first" if c.get("pil", "0") == "1" else "last") if int(c.get("pi", 0)) else None,
    }
    if int(c.get("pi", 0)):
        cfg["pi_guard_bits"] = 64 if c.get("pif", "0") == "2" else 16
    for f, v in cfg.items():
        if n.get(f) != v:
            bad.append(f"ns {nsid} {f}: ours {n.get(f)!r}, configured {v!r}")

    # Identification descriptors, by type.
    descs = json.load(open(f"/tmp/fk-descs-{i}-{nsid}.json"))["ns-descs"]
    theirs = {d["type"]: d[d["type"]] for d in descs}
    od = n["descriptors"] or {}
    for t in ["eui64", "nguid", "uuid", "csi"]:
        k = theirs.get(t)
        if t == "csi" and k is not None:
            k = int(k, 0)  # nvme-cli prints "0" for NVM, "0x2" for zoned
        same(f"ns {nsid} descriptor {t}", od.get(t), k)
    if "eui64" in c:
        same(f"ns {nsid} descriptor eui64 (configured)", od.get("eui64"), f"{int(c['eui64'], 0):016x}")
    if "uuid" in c:
        same(f"ns {nsid} descriptor uuid (configured)", od.get("uuid"), c["uuid"].lower())
    csi = od.get("csi")
    if n.get("command_set") != {0: "nvm", 1: "key-value", 2: "zoned", None: None}.get(csi, "reserved"):
        bad.append(f"ns {nsid} command_set {n.get('command_set')!r} for CSI {csi!r}")
    print(f"  ns {nsid}: {lba}+{ms} {'extended' if ext else 'separate'} flbas {flbas:#x} mc {kn['mc']:#x}"
          f" dpc {kn['dpc']:#x} dps {dps:#x} (pi {n['pi_type']} {n['pi_location']}),"
          f" {len(kn['lbafs'])} formats, descriptors {sorted(theirs)}, guard {n.get('pi_guard_bits')}")
for b in bad:
    print("MISMATCH", b)
sys.exit(1 if bad else 0)
PY
    i=$((i + 1))
done
[ $i -ge 2 ] || fail "the formats guest has $i controllers, expected the formats one and the small-MDTS one"
