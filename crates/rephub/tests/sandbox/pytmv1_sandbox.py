"""The official Vision One SDK (pytmv1) against rephub's sandbox: submit URLs, wait for each
analysis, list suspicious objects; one JSON line per URL on standard output."""
import json
import sys

import pytmv1

base, key = sys.argv[1], sys.argv[2]
urls = sys.argv[3:]
client = pytmv1.init("rephub-test", key, base)
submitted = client.sandbox.submit_url(*urls)
for i, url in enumerate(urls):
    item = submitted.response.items[i] if submitted.response else None
    out = {"url": url, "submit_status": item.status if item else None}
    if item is None or item.task_id is None:
        out["errors"] = [e.model_dump() for e in submitted.errors] if submitted.errors else []
        print(json.dumps(out), flush=True)
        continue
    out["task_id"] = item.task_id
    result = client.sandbox.get_analysis_result(item.task_id, poll=True, poll_time_sec=60)
    status = client.sandbox.get_submission_status(item.task_id)
    out["task_status"] = status.response.status.value if status.response else None
    out["is_cached"] = status.response.is_cached if status.response else None
    if result.response:
        out["risk_level"] = result.response.risk_level.value
        out["detection_names"] = result.response.detection_names
        out["threat_types"] = result.response.threat_types
        suspicious = client.sandbox.list_suspicious(item.task_id, poll=False)
        out["suspicious"] = [s.value for s in suspicious.response.items] if suspicious.response else None
    else:
        out["result_error"] = result.error.model_dump() if result.error else None
    print(json.dumps(out), flush=True)
