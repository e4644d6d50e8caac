"""Writes a MISP feed directory with PyMISP (MISPEvent -> to_feed), as MISP's feed generator
does: manifest.json, one <uuid>.json per event, hashes.csv.

    python3 misp_feed.py OUT_DIR SPEC.json

SPEC: {"events": [{"uuid", "info", "threat_level", "timestamp", "tags": [...],
                   "attributes": [{"type", "value", "to_ids", "tags": [...]}],
                   "objects": [{"name", "attributes": [{"relation", "value", "to_ids"}]}]}],
       "broken": ["<uuid>", ...],          # listed in the manifest, file not an event
       "generate": {"events": N, "attributes": M}}   # N events of M ip-dst each (benchmarks)
"""
import json
import os
import sys

from pymisp import MISPEvent, MISPObject, MISPOrganisation


def org():
    o = MISPOrganisation()
    o.name = "rephub-test"
    o.uuid = "11111111-1111-4111-8111-111111111111"
    return o


def event(spec):
    e = MISPEvent()
    e.uuid = spec["uuid"]
    e.info = spec.get("info", "test event")
    e.threat_level_id = spec.get("threat_level", 4)
    e.Orgc = org()
    e.date = "2026-01-01"
    for t in spec.get("tags", []):
        e.add_tag(t)
    for a in spec.get("attributes", []):
        attr = e.add_attribute(a["type"], a["value"], to_ids=a.get("to_ids", True))
        for t in a.get("tags", []):
            attr.add_tag(t)
    for o in spec.get("objects", []):
        obj = MISPObject(o["name"])
        for a in o["attributes"]:
            obj.add_attribute(a["relation"], value=a["value"], to_ids=a.get("to_ids", True))
        e.add_object(obj)
    # Last: adding attributes moves the event's timestamp.
    e.timestamp = spec["timestamp"]
    return e


def main():
    out, spec_file = sys.argv[1], sys.argv[2]
    with open(spec_file) as f:
        spec = json.load(f)
    events = [event(s) for s in spec.get("events", [])]
    g = spec.get("generate")
    if g:
        for i in range(g["events"]):
            attrs = [{"type": "ip-dst",
                      "value": f"{10 + (i * g['attributes'] + j) // 16777216}."
                               f"{(i * g['attributes'] + j) // 65536 % 256}."
                               f"{(i * g['attributes'] + j) // 256 % 256}."
                               f"{(i * g['attributes'] + j) % 256}"}
                     for j in range(g["attributes"])]
            events.append(event({"uuid": f"00000000-0000-4000-8000-{i:012d}",
                                 "threat_level": 1, "timestamp": 1_700_000_000,
                                 "attributes": attrs}))
    os.makedirs(out, exist_ok=True)
    manifest, hashes = {}, []
    for e in events:
        feed = e.to_feed(with_meta=True)["Event"]
        manifest.update(feed.pop("_manifest"))
        hashes.extend(f"{h},{e.uuid}" for h in feed.pop("_hashes"))
        with open(os.path.join(out, f"{e.uuid}.json"), "w") as f:
            json.dump({"Event": feed}, f)
    for uuid in spec.get("broken", []):
        manifest[uuid] = {"info": "broken", "timestamp": 1_700_000_000, "threat_level_id": 1}
        with open(os.path.join(out, f"{uuid}.json"), "w") as f:
            f.write("{\"Event\": [this is not json")
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    with open(os.path.join(out, "hashes.csv"), "w") as f:
        f.write("\n".join(hashes) + "\n")
    print(json.dumps({"events": len(manifest)}))


if __name__ == "__main__":
    main()
