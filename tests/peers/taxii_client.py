"""Pages through a TAXII 2.1 collection with the official client (taxii2-client), as MISP's and
OpenCTI's TAXII connectors do, and prints what it got as JSON: objects, pages, distinct ids,
revoked, the indicators' names (when asked), the last X-TAXII-Date-Added-Last, and the seconds
the paging took.

    python3 taxii_client.py URL COLLECTION_TITLE USER PASSWORD PER_REQUEST [ADDED_AFTER] [--names]
"""
import json
import sys
import time

from taxii2client.v21 import Server, as_pages


def main():
    args = [a for a in sys.argv[1:] if a != "--names"]
    with_names = "--names" in sys.argv
    url, title, user, password, per_request = args[:5]
    added_after = args[5] if len(args) > 5 else None
    server = Server(url, user=user, password=password)
    root = server.default
    found = [c for c in root.collections if c.title == title]
    if not found:
        sys.exit(f"no collection titled {title!r} at {root.url}")
    collection = found[0]
    kwargs = {"added_after": added_after} if added_after else {}
    objects, pages, ids, revoked, names = 0, 0, set(), 0, []
    # The client returns bodies only: a response hook keeps the range header.
    seen = {}

    def keep(resp, *_, **__):
        if "X-TAXII-Date-Added-Last" in resp.headers:
            seen["last"] = resp.headers["X-TAXII-Date-Added-Last"]

    collection._conn.session.hooks["response"].append(keep)
    start = time.monotonic()
    for envelope in as_pages(collection.get_objects, per_request=int(per_request), **kwargs):
        pages += 1
        page = envelope.get("objects", [])
        objects += len(page)
        for o in page:
            ids.add(o["id"])
            if o.get("revoked"):
                revoked += 1
            if with_names:
                names.append(o["name"])
        if pages > 100_000:
            sys.exit("more than 100,000 pages: the server never said no more")
    elapsed = time.monotonic() - start
    print(json.dumps({"objects": objects, "pages": pages, "distinct": len(ids),
                      "revoked": revoked, "names": names, "last": seen.get("last"),
                      "seconds": elapsed}))


if __name__ == "__main__":
    main()
