"""Run SQL in a chDB engine of its own (``python chdb_session.py`` in a subprocess) and print each
statement's rows or error as JSON.

A process holds one chDB engine bound to one path, and its session user is always ``default``;
a test that needs the engine under another users file (e.g. ``default`` restricted by row
policies) runs it here. stdin: ``{"path": ..., "config": config.xml or null, "queries": [...]}``;
stdout: one ``{"rows": [[...], ...]}`` or ``{"error": "ACCESS_DENIED"}`` per query, in order.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import chdb

_ERROR_NAME = re.compile(r"\(([A-Z_]+)\)")


def run(path: str, config: str | None, queries: list[str]) -> list[dict[str, Any]]:
    # 64-bit integers as JSON numbers, so counts compare as numbers
    options = "output_format_json_quote_64bit_integers=0" + (f"&config-file={config}" if config else "")
    connection = chdb.connect(f"file:{path}?{options}")
    results: list[dict[str, Any]] = []
    try:
        for query in queries:
            try:
                text = str(connection.query(query, "JSONCompact"))
            except Exception as exc:  # every refusal is a result the test reads
                names = _ERROR_NAME.findall(str(exc))
                results.append({"error": names[-1] if names else str(exc)})
                continue
            try:
                results.append({"rows": json.loads(text)["data"] if text.strip() else []})
            except json.JSONDecodeError:  # e.g. an exception raised while the result streamed
                results.append({"error": f"not one JSON result: {text[-300:]}"})
    finally:
        connection.close()
    return results


if __name__ == "__main__":
    request = json.load(sys.stdin)
    json.dump(run(request["path"], request["config"], request["queries"]), sys.stdout)
