"""``start_proxies.py stats``: ccusage-style reports from the usage record, starting nothing."""

from __future__ import annotations

import csv
import io
import json
import time

from memory_proxy.launcher.term import err, out
from memory_proxy.state import StateDir

COLUMNS = (("requests", "requests"), ("errors", "errors"), ("p50 ms", "p50_latency_ms"),
           ("p95 ms", "p95_latency_ms"), ("p50 1st event", "p50_first_event_ms"), ("input", "input_tokens"),
           ("output", "output_tokens"), ("cache read", "cache_read_tokens"), ("cache write", "cache_write_tokens"),
           ("cost USD", "cost_usd"), ("mem errors", "memory_errors"), ("ctx modified", "context_modified"),
           ("cf retries", "cloudflare_retries"))


def _cost(row: dict) -> str:
    """Priced cost; a row with requests of models without a price is marked, never shown as free."""
    if row["unpriced_requests"] and row["unpriced_requests"] == row["requests"]:
        return "n/a*"
    text = f"{row['cost_usd']:.4f}"
    return text + "*" if row["unpriced_requests"] else text


def _cell(row: dict, name: str) -> str:
    value = row.get(name)
    if name == "cost_usd":
        return _cost(row)
    if value is None:
        return "-"
    return f"{value:,.0f}" if isinstance(value, (int, float)) else str(value)


def render_table(columns: list[str], rows: list[list[str]], text_columns: int) -> str:
    """Plain columns, numbers right-aligned, two spaces apart (as wide as it takes: a long
    report wraps in the terminal rather than losing figures)."""
    widths = [max(len(col), *(len(row[i]) for row in rows)) for i, col in enumerate(columns)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < text_columns else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return "\n".join([line(columns)] + [line(row) for row in rows]) + "\n"


def stats(config_path, state: StateDir, *, period: str | None, by: str, since: str | None, until: str | None,
          key: str | None, breakdown: bool, as_json: bool, as_csv: bool) -> int:
    from memory_proxy.config.model import ConfigError, load_config
    from memory_proxy.usage import report as ur
    from memory_proxy.usage.store import database_file

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        err.line((exc.render(), "red"))
        return 2
    settings = config.proxy.usage
    if not settings.database_url and not database_file(state.root).exists():
        message = ("usage recording is off (memory_proxy.usage.enabled: false)" if not settings.enabled else
                   f"no usage recorded yet in {state.root} (start the proxies with `up` and send a request)")
        if as_json:
            print(json.dumps({"reports": [], "note": message}))
            return 0
        err.line(message)
        return 0
    try:
        since_ms = ur.parse_day(since) if since else None
        until_ms = ur.parse_day(until, end=True) if until else None
    except ValueError as exc:
        err.line((str(exc), "red"))
        return 2
    try:
        reports = _read_reports(settings.database_url, state.root, period=period, by=by, since_ms=since_ms,
                                until_ms=until_ms, key=key, breakdown=breakdown)
    except Exception as exc:  # the store's own errors (sqlite3, psycopg): one line, never a traceback
        from memory_proxy.config.secrets import without_config_secrets

        where = "PostgreSQL (memory_proxy.usage.database_url)" if settings.database_url else \
            str(database_file(state.root))
        detail = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        err.line((f"cannot read the usage store {where}: {without_config_secrets(detail, config)}", "red"))
        return 1
    data = [{"report": name, "by": by, "rows": [r.as_dict() for r in rows], "total": ur.totals(rows).as_dict()}
            for name, rows in reports]
    return _print(data, by, breakdown, as_json, as_csv)


def _read_reports(database_url, state_root, *, period, by, since_ms, until_ms, key, breakdown) -> list[tuple]:
    """(name, rows) of each report asked for, read from the store the config names."""
    from memory_proxy.usage import report as ur
    from memory_proxy.usage.store import open_store

    store = open_store(database_url, state_root, readonly=True)
    try:
        if period is None:  # today and the last 7 days, by client
            today = ur.today_start_ms()
            reports = [("today", ur.report(store, period="total", by=by, since_ms=max(today, since_ms or 0),
                                           until_ms=until_ms, key=key, breakdown=breakdown)),
                       ("last 7 days", ur.report(store, period="total", by=by,
                                                 since_ms=max(today - 6 * ur.DAY_MS, since_ms or 0),
                                                 until_ms=until_ms, key=key, breakdown=breakdown))]
        else:
            reports = [(period, ur.report(store, period=period, by=by, since_ms=since_ms, until_ms=until_ms,
                                          key=key, breakdown=breakdown))]
    finally:
        store.close()
    return reports


def _print(data: list[dict], by: str, breakdown: bool, as_json: bool, as_csv: bool) -> int:
    if as_json:
        print(json.dumps({"reports": data, "generated_at": int(time.time())}, indent=1))
        return 0
    if as_csv:
        buffer = io.StringIO()
        fields = ["report", "period", "key", "model", "requests", "errors", "p50_latency_ms", "p95_latency_ms",
                  "p50_first_event_ms", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
                  "cost_usd", "unpriced_requests", "memory_errors", "context_modified", "cloudflare_retries"]
        writer = csv.DictWriter(buffer, fields, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for report in data:
            for row in report["rows"]:
                writer.writerow({"report": report["report"], **row})
        print(buffer.getvalue(), end="")
        return 0
    marked = False
    for report in data:
        out.line((f"{report['report']} by {by}", "bold"))
        first = ["period"] if report["report"] not in ("today", "last 7 days") else []
        columns = first + [by] + (["model"] if breakdown else []) + [title for title, _ in COLUMNS]
        table = []
        for row in report["rows"] + ([report["total"]] if report["rows"] else []):
            lead = [row["period"]] if first else []
            table.append(lead + [row["key"] or "-"] + ([row.get("model") or "-"] if breakdown else [])
                         + [_cell(row, name) for _, name in COLUMNS])
            marked = marked or bool(row["unpriced_requests"])
        if table:
            out.write(render_table(columns, table, text_columns=len(columns) - len(COLUMNS)))
        else:
            out.line("  no requests")
        out.line("")
    if marked:
        out.line("* includes requests of models LiteLLM has no price for, or without LiteLLM's figures: "
                 "their cost is unknown, not counted")
    return 0
