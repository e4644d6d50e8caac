"""pytmv1 submitting one file to rephub's sandbox: the analysis and the suspicious objects as
one JSON line (or the SDK's error)."""
import json
import sys

import pytmv1

base, key, path = sys.argv[1], sys.argv[2], sys.argv[3]
client = pytmv1.init("rephub-test", key, base)
with open(path, "rb") as f:
    submitted = client.sandbox.submit_file(f.read(), path.rsplit("/", 1)[-1])
if submitted.response is None:
    print(json.dumps({"error": submitted.error.model_dump() if submitted.error else None}))
    sys.exit(0)
task = submitted.response.id
result = client.sandbox.get_analysis_result(task, poll=True, poll_time_sec=60)
out = {"task_id": task, "sha256": submitted.response.digest.sha256}
if result.response:
    out["type"] = result.response.type.value
    out["risk_level"] = result.response.risk_level.value
    out["detection_names"] = result.response.detection_names
    suspicious = client.sandbox.list_suspicious(task, poll=False)
    out["suspicious"] = sorted(
        [s.type.value, s.value] for s in suspicious.response.items
    ) if suspicious.response else None
print(json.dumps(out), flush=True)
