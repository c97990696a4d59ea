# NVMe/TCP check 4: our discovery controller listing (`nvme-identify
# tcp://127.0.0.1:4420 --json`, nvme-cli's `nvme discover -o json` layout)
# holds the records `nvme discover -t tcp -a 127.0.0.1 -s 4420 -o json` holds,
# compared on trtype, adrfam, traddr, trsvcid, subnqn, portid and subtype; the
# Linux target's subsystem is among them.
set -eu
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../tcp.sh"
identify=$(need_bin nvme-identify)

tcp_target_up
nvme discover -t tcp -a "$TCP_ADDR" -s "$TCP_SVCID" -o json >/tmp/k-disc.json ||
    fail "nvme discover -t tcp -a $TCP_ADDR -s $TCP_SVCID failed"
python3 - "$TCP_NQN" <<'PY' >&2 || fail "nvme discover does not list $TCP_NQN"
import json, sys
j = json.load(open("/tmp/k-disc.json"))
print(f"nvme discover: genctr {j['genctr']}, {len(j['records'])} records")
for r in j["records"]:
    print(f"  {r['subtype']}: {r['subnqn']} {r['trtype']} {r['adrfam']} {r['traddr']}:{r['trsvcid']} port {r['portid']}")
sys.exit(0 if any(r["subnqn"] == sys.argv[1] and r["subtype"] == "nvme subsystem" for r in j["records"]) else 1)
PY

log "ours: nvme-identify $TCP_DISC_DEV --json"
"$identify" "$TCP_DISC_DEV" --json >/tmp/ours-disc.json 2>/tmp/ours-disc.err || {
    status=$?
    cat /tmp/ours-disc.err >&2
    fail "nvme-identify $TCP_DISC_DEV exited with status $status"
}
python3 - <<'PY' || fail "our discovery listing differs from nvme discover's (see above)"
import json, sys
keys = ["trtype", "adrfam", "traddr", "trsvcid", "subnqn", "portid", "subtype"]
norm = lambda r: tuple(r.get(k).strip() if isinstance(r.get(k), str) else r.get(k) for k in keys)
k = json.load(open("/tmp/k-disc.json"))
o = json.load(open("/tmp/ours-disc.json"))
if not isinstance(o.get("genctr"), int):
    print(f"MISMATCH ours has no integer genctr: {o.get('genctr')!r}")
    sys.exit(1)
kr, orr = sorted(map(norm, k["records"])), sorted(map(norm, o.get("records", [])))
print(f"ours: genctr {o['genctr']}, {len(orr)} records")
for r in orr:
    print("  " + " ".join(f"{n}={v}" for n, v in zip(keys, r)))
for r in sorted(set(kr) - set(orr)):
    print("MISMATCH missing from ours: " + " ".join(f"{n}={v}" for n, v in zip(keys, r)))
for r in sorted(set(orr) - set(kr)):
    print("MISMATCH not in nvme discover: " + " ".join(f"{n}={v}" for n, v in zip(keys, r)))
sys.exit(0 if kr == orr else 1)
PY
