"""The control API under ``/_emulator/``: health, faults, delays, calls, events.

Tests and benchmarks use it to steer the emulator and to observe what a
client did. Every answer is JSON; a request that cannot be applied answers
400 with ``{"error": "..."}`` and changes nothing.
"""

from __future__ import annotations

import json
from typing import Any, Callable
from urllib.parse import parse_qs

from .state import EMULATOR, ControlError

Response = tuple[int, Any]


def _read_json(environ: dict[str, Any]) -> Any:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length:
        raw = environ["wsgi.input"].read(length)
    elif environ.get("wsgi.input_terminated"):
        # A chunked body has no length; the server marks it as terminated.
        raw = environ["wsgi.input"].read()
    else:
        raw = b""
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError as error:
        raise ControlError(f"the body is not valid JSON: {error}") from error


def _health(method: str, environ: dict[str, Any]) -> Response:
    return 200, {"ok": True, "time_scale": EMULATOR.time_scale}


def _faults(method: str, environ: dict[str, Any]) -> Response:
    if method == "POST":
        EMULATOR.merge_faults(_read_json(environ))
    elif method == "DELETE":
        EMULATOR.clear_faults()
    return 200, {"faults": dict(EMULATOR.faults)}


def _delays(method: str, environ: dict[str, Any]) -> Response:
    if method == "POST":
        EMULATOR.merge_delays(_read_json(environ))
    elif method == "DELETE":
        raise ControlError("delays cannot be deleted; POST the values to change")
    return 200, {"delays": EMULATOR.describe_delays()}


def _calls(method: str, environ: dict[str, Any]) -> Response:
    if method == "DELETE":
        EMULATOR.reset_calls()
    elif method == "POST":
        raise ControlError("calls are recorded by the emulator; use GET or DELETE")
    calls = [dict(c) for c in EMULATOR.calls]
    mutating: dict[str, int] = {}
    for call in calls:
        if call["mutating"]:
            mutating[call["key"]] = mutating.get(call["key"], 0) + 1
    return 200, {
        "total": len(calls),
        "counts": dict(EMULATOR.call_counts),
        "mutating_counts": mutating,
        "calls": calls,
    }


def _events(method: str, environ: dict[str, Any]) -> Response:
    if method == "DELETE":
        EMULATOR.events.clear()
    elif method == "POST":
        raise ControlError("events are recorded by the emulator; use GET or DELETE")
    query = parse_qs(environ.get("QUERY_STRING", ""))
    events = list(EMULATOR.events)
    if "kind" in query:
        events = [e for e in events if e["kind"] in query["kind"]]
    if "id" in query:
        events = [e for e in events if e["id"] in query["id"]]
    if "since" in query:
        try:
            since = float(query["since"][0])
        except ValueError as error:
            raise ControlError("since must be an epoch time in seconds") from error
        events = [e for e in events if e["time"] >= since]
    return 200, {"events": events}


ROUTES: dict[str, tuple[Callable[[str, dict[str, Any]], Response], tuple[str, ...]]] = {
    "/_emulator/health": (_health, ("GET",)),
    "/_emulator/faults": (_faults, ("GET", "POST", "DELETE")),
    "/_emulator/delays": (_delays, ("GET", "POST")),
    "/_emulator/calls": (_calls, ("GET", "DELETE")),
    "/_emulator/events": (_events, ("GET", "DELETE")),
}


def handle(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    path = environ.get("PATH_INFO", "").rstrip("/")
    method = environ.get("REQUEST_METHOD", "GET").upper()
    route = ROUTES.get(path)
    if route is None:
        status, body = 404, {"error": f"no control endpoint {path}; known: {', '.join(sorted(ROUTES))}"}
    elif method not in route[1]:
        status, body = 405, {"error": f"{path} accepts {', '.join(route[1])}"}
    else:
        try:
            with EMULATOR.lock:
                status, body = route[0](method, environ)
        except ControlError as error:
            status, body = 400, {"error": str(error)}
    payload = json.dumps(body).encode("utf-8")
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}[status]
    start_response(
        f"{status} {reason}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
    )
    return [payload]
