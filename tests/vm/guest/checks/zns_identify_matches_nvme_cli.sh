# The zoned namespace (controller 2, namespace 2): nvme-identify --json through
# vfio-pci reports command_set "zoned" and the zone geometry nvme-cli reads through
# the kernel driver: zone_size_blocks = ZSZE of the in-use format's LBA format
# extension (`nvme zns id-ns`), zones = NSZE / ZSZE (`nvme id-ns`), max_active =
# MAR + 1, max_open = MOR + 1, zasl_bytes = 2^ZASL minimum pages (`nvme zns
# id-ctrl`; null when ZASL is 0, MDTS then limits appends); each also as the
# namespace was configured (QEMU's zoned.zone_size, zoned.max_open,
# zoned.max_active and the controller's zoned.zasl), and as the kernel's zoned
# block device shows them (queue/zoned, chunk_sectors, nr_zones, max_open_zones,
# max_active_zones, zone_append_max_bytes). Prints CAP.CSS and the kernel's CC.CSS.
set -eu
. "$(dirname "$0")/../lib.sh"
identify=$(need_bin nvme-identify)
bdf=$(bdf_of 2)
nsid=2

ctrl=$(bind_nvme "$bdf")
blk=${ctrl}n$nsid
wait_for test -e "/sys/block/$blk/queue/zoned" || fail "/dev/$blk did not appear"
nvme id-ns "/dev/$ctrl" -n $nsid -o json >/tmp/zk-ns.json || fail "nvme id-ns -n $nsid failed"
nvme zns id-ns "/dev/$ctrl" -n $nsid -o json >/tmp/zk-zns.json || fail "nvme zns id-ns -n $nsid failed"
nvme zns id-ctrl "/dev/$ctrl" -o json >/tmp/zk-zctrl.json || fail "nvme zns id-ctrl failed"
q=/sys/block/$blk/queue
cat >/tmp/zk-sysfs.json <<JSON
{"zoned": "$(cat $q/zoned)", "chunk_sectors": $(cat $q/chunk_sectors), "nr_zones": $(cat $q/nr_zones),
 "max_open_zones": $(cat $q/max_open_zones), "max_active_zones": $(cat $q/max_active_zones),
 "zone_append_max_bytes": $(cat $q/zone_append_max_bytes), "sectors": $(cat /sys/block/$blk/size)}
JSON
# CAP and the CC the kernel driver set, from BAR0 once the driver let it go (nvme-cli
# 2.3's show-regs aborts here; a BAR a driver holds cannot be mapped). Its shutdown
# keeps CC.CSS.
echo "$bdf" >"/sys/bus/pci/devices/$bdf/driver/unbind"
python3 - "/sys/bus/pci/devices/$bdf/resource0" >/tmp/zk-regs.json <<'PY' || fail "cannot read CAP and CC from BAR0"
import json, mmap, os, struct, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
m = mmap.mmap(fd, 4096, mmap.MAP_SHARED, mmap.PROT_READ)
cap = struct.unpack_from("<I", m, 0)[0] | struct.unpack_from("<I", m, 4)[0] << 32
print(json.dumps({"cap": cap, "cc": struct.unpack_from("<I", m, 0x14)[0]}))
PY
bind_vfio "$bdf" >/dev/null
"$identify" "$bdf" --json >/tmp/zours.json || fail "nvme-identify $bdf exited with status $?"

python3 - "$nsid" "$(ns_prop 2 $nsid lbs)" "$(ns_prop 2 $nsid zoned.zone_size)" \
    "$(ns_prop 2 $nsid zoned.max_open)" "$(ns_prop 2 $nsid zoned.max_active)" "$(conf_of 2 zoned.zasl)" <<'PY' ||
import json, sys
nsid, lbs, zone_size, max_open, max_active, zasl_conf = sys.argv[1:]
nsid, lbs = int(nsid), int(lbs)
ours = json.load(open("/tmp/zours.json"))
kns, kz = json.load(open("/tmp/zk-ns.json")), json.load(open("/tmp/zk-zns.json"))
kc, regs = json.load(open("/tmp/zk-zctrl.json")), json.load(open("/tmp/zk-regs.json"))
sysfs = json.load(open("/tmp/zk-sysfs.json"))
bad = []
def same(what, got, want):
    if got != want:
        bad.append(f"{what}: nvme-identify {got!r}, expected {want!r}")
n = next((n for n in ours["namespaces"] if n["nsid"] == nsid), None)
if n is None:
    sys.exit(f"FAIL: nvme-identify lists no namespace {nsid}")
same("ns 1 command_set", next(m for m in ours["namespaces"] if m["nsid"] == 1)["command_set"], "nvm")
same("command_set", n["command_set"], "zoned")
z = n.get("zoned") or {}
fmt = kns["flbas"] & 0xF
zsze = kz["lbafe"][fmt]["zsze"]
same("nsze", n["nsze"], kns["nsze"])
same("zone_size_blocks (ZSZE of LBAFE[flbas])", z.get("zone_size_blocks"), zsze)
same("zones (NSZE / ZSZE)", z.get("zones"), -(-kns["nsze"] // zsze))
same("max_active (MAR + 1)", z.get("max_active"), None if kz["mar"] == 0xFFFFFFFF else kz["mar"] + 1)
same("max_open (MOR + 1)", z.get("max_open"), None if kz["mor"] == 0xFFFFFFFF else kz["mor"] + 1)
cap = int(regs["cap"])
page = 4096 << ((cap >> 48) & 0xF)
same("zasl_bytes (2^ZASL minimum pages)", z.get("zasl_bytes"), (page << kc["zasl"]) if kc["zasl"] else None)
# What the namespace was configured with.
size_bytes = int(zone_size.rstrip("M")) << 20
same("zone_size_blocks (configured)", z.get("zone_size_blocks"), size_bytes // lbs)
same("max_open (configured)", z.get("max_open"), int(max_open))
same("max_active (configured)", z.get("max_active"), int(max_active))
if zasl_conf not in ("", "0"):
    same("zasl_bytes (configured)", z.get("zasl_bytes"), page << int(zasl_conf))
# The kernel's zoned block device.
same("kernel queue/zoned", sysfs["zoned"], "host-managed")
same("zone bytes (kernel chunk_sectors)", z.get("zone_size_blocks", 0) * lbs, sysfs["chunk_sectors"] * 512)
same("zones (kernel nr_zones)", z.get("zones"), sysfs["nr_zones"])
same("max_open (kernel max_open_zones)", z.get("max_open") or 0, sysfs["max_open_zones"])
same("max_active (kernel max_active_zones)", z.get("max_active") or 0, sysfs["max_active_zones"])
if z.get("zasl_bytes") is not None and sysfs["zone_append_max_bytes"] > z["zasl_bytes"]:
    bad.append(f"the kernel appends up to {sysfs['zone_append_max_bytes']} bytes, above ZASL {z['zasl_bytes']}")
cc = int(regs["cc"])
print(f"kernel CC {cc:#x} (after its shutdown): CSS {(cc >> 4) & 7:#05b}; CAP.CSS {(cap >> 37) & 0xFF:#x}")
print(f"ns {nsid}: {n['nsze']} blocks of {lbs} bytes, zoned {z}; kernel {sysfs}")
for b in bad:
    print("MISMATCH", b)
sys.exit(1 if bad else 0)
PY
    fail "nvme-identify disagrees with nvme-cli on the zoned namespace (see above)"
