"""Run by bench_export.py in a fresh process: export the tenant's ledger once and print peak RSS (JSON).

  python -m tests.bench.export_rss <tenant_id> <username> <limit-or-0> <stream|materialise>

stream: GET /api/v1/ledger/export/ through Django's test client, consuming the streamed body.
materialise: the contrast, every entry loaded into a list first (what a non-streaming export does).
"""
import json
import os
import sys


def _kib(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field))


def main() -> None:
    tenant_id, username, limit, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "revplan.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.test import Client

    from plans.models import PlanLedgerEntry

    entries = PlanLedgerEntry.objects.filter(tenant_id=tenant_id).order_by("occurred_at", "id")
    to = entries.values_list("occurred_at", flat=True)[limit] if limit else None
    client = Client()
    client.force_login(get_user_model().objects.get(username=username))
    client.get("/api/v1/me/")  # warm: imports, URL conf, DRF
    before = _kib("VmRSS:")
    lines = size = 0
    if mode == "stream":
        params = {"tenant": tenant_id, **({"to": to.isoformat()} if to else {})}
        response = client.get("/api/v1/ledger/export/", params)
        assert response.status_code == 200, response.status_code
        for chunk in response.streaming_content:
            size += len(chunk)
            lines += chunk.count(b"\n")
    else:
        rows = list(entries.filter(occurred_at__lt=to) if to else entries)
        body = "".join(json.dumps({"entry_id": row.id, "data": row.data, "explanation": row.explanation},
                                  default=str) + "\n" for row in rows)
        size, lines = len(body), body.count("\n")
    print(json.dumps({"lines": lines, "bytes": size, "rss_before_kib": before, "peak_rss_kib": _kib("VmHWM:")}))


if __name__ == "__main__":
    main()
