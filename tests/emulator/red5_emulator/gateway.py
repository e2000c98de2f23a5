"""The WSGI layer in front of moto: control API, call log, faults, one lock.

Every AWS request is named ``service:Action`` (the service from the SigV4
credential scope, the action from ``Action=`` in a query-protocol body or
from the ``X-Amz-Target`` header of a JSON-protocol request), counted, and
then either refused by a fault switch or handed to moto under the emulator's
lock, after the clock has applied every transition that is due. So a client
always sees the state the emulated time says it should.

Refusals use the error shape each protocol really has, so an SDK classifies
them as it would on AWS: EC2 ``RequestLimitExceeded`` (503) and
``InternalError`` (500); query services such as Auto Scaling ``Throttling``
(400) and ``InternalFailure`` (500); JSON services such as SSM
``ThrottlingException`` (400) and ``InternalServerError`` (500).
"""

from __future__ import annotations

import io
import json
import uuid
from typing import Any, Callable
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from . import control
from .state import EMULATOR

QUERY_NAMESPACES = {
    "autoscaling": "http://autoscaling.amazonaws.com/doc/2011-01-01/",
    "elasticloadbalancing": "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/",
    "iam": "https://iam.amazonaws.com/doc/2010-05-08/",
    "sts": "https://sts.amazonaws.com/doc/2011-06-15/",
}

JSON_TARGET_SERVICES = {"AmazonSSM": "ssm"}

# (HTTP status, error code, message) per protocol and fault.
REFUSALS = {
    ("ec2", "throttled"): (503, "RequestLimitExceeded", "Request limit exceeded."),
    ("ec2", "server_error"): (500, "InternalError", "An internal error has occurred."),
    ("query", "throttled"): (400, "Throttling", "Rate exceeded"),
    ("query", "server_error"): (
        500, "InternalFailure",
        "The request processing has failed because of an unknown error, exception or failure.",
    ),
    ("json", "throttled"): (400, "ThrottlingException", "Rate exceeded"),
    ("json", "server_error"): (500, "InternalServerError", "An internal server error occurred."),
}

REASONS = {400: "Bad Request", 500: "Internal Server Error", 503: "Service Unavailable"}


def _buffer_body(environ: dict[str, Any]) -> bytes:
    """Read the request body and put it back so moto can read it again."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    length = environ.get("CONTENT_LENGTH")
    if length:
        try:
            body = stream.read(int(length))
        except ValueError:
            body = b""
    elif environ.get("wsgi.input_terminated"):
        body = stream.read()
    else:
        body = b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return body


def identify(environ: dict[str, Any], body: bytes) -> tuple[str, str, str]:
    """Return (service, action, protocol) of an AWS request."""
    service = "unknown"
    auth = environ.get("HTTP_AUTHORIZATION", "")
    if "Credential=" in auth:
        scope = auth.split("Credential=", 1)[1].split(",", 1)[0].strip()
        parts = scope.split("/")
        if len(parts) >= 5:
            service = parts[3].lower()
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target and "." in target:
        prefix, action = target.split(".", 1)
        if service == "unknown":
            service = JSON_TARGET_SERVICES.get(prefix, prefix.lower())
        return service, action, "json"
    params = parse_qs(environ.get("QUERY_STRING", ""))
    content_type = environ.get("CONTENT_TYPE", "")
    if body and "x-www-form-urlencoded" in content_type:
        params.update(parse_qs(body.decode("utf-8", "replace")))
    action = (params.get("Action") or [""])[0]
    if not action:
        action = f"{environ.get('REQUEST_METHOD', 'GET')} {environ.get('PATH_INFO', '/')}"
    return service, action, "ec2" if service == "ec2" else "query"


def refusal(service: str, protocol: str, fault: str) -> tuple[int, list[tuple[str, str]], bytes]:
    status, code, message = REFUSALS[(protocol, fault)]
    request_id = str(uuid.uuid4())
    if protocol == "json":
        body = json.dumps({"__type": code, "message": message}).encode("utf-8")
        headers = [
            ("Content-Type", "application/x-amz-json-1.1"),
            ("x-amzn-ErrorType", code),
        ]
    elif protocol == "ec2":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Response><Errors><Error><Code>{code}</Code><Message>{escape(message)}</Message>"
            f"</Error></Errors><RequestID>{request_id}</RequestID></Response>"
        ).encode("utf-8")
        headers = [("Content-Type", "text/xml;charset=UTF-8")]
    else:
        namespace = QUERY_NAMESPACES.get(service, f"https://{service}.amazonaws.com/doc/")
        sender = "Sender" if status < 500 else "Receiver"
        body = (
            f'<ErrorResponse xmlns="{namespace}"><Error><Type>{sender}</Type>'
            f"<Code>{code}</Code><Message>{escape(message)}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode("utf-8")
        headers = [("Content-Type", "text/xml")]
    headers += [("x-amzn-RequestId", request_id), ("Content-Length", str(len(body)))]
    return status, headers, body


def _run(app: Callable[..., Any], environ: dict[str, Any],
         start_response: Callable[..., Any]) -> tuple[list[bytes], int]:
    statuses: list[int] = []

    def recording_start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        statuses.append(int(status.split()[0]))
        return start_response(status, headers, exc_info)

    result = app(environ, recording_start_response)
    try:
        chunks = list(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return chunks, statuses[-1] if statuses else 500


class Gateway:
    def __init__(self, app: Callable[..., Any]):
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if path == "/_emulator" or path.startswith("/_emulator/"):
            return control.handle(environ, start_response)
        if path.startswith("/moto-api"):
            with EMULATOR.lock:
                chunks, status = _run(self.app, environ, start_response)
                is_reset = path.rstrip("/") == "/moto-api/reset"
                if is_reset and environ.get("REQUEST_METHOD") == "POST" and status == 200:
                    EMULATOR.reset()
            return chunks

        body = _buffer_body(environ)
        service, action, protocol = identify(environ, body)
        with EMULATOR.lock:
            entry = EMULATOR.record_call(service, action)
            fault = EMULATOR.next_request_fault(service, action)
            if fault is not None:
                status, headers, payload = refusal(service, protocol, fault)
                entry["status"] = status
                entry["fault"] = fault
                start_response(f"{status} {REASONS[status]}", headers)
                return [payload]
            EMULATOR.tick()
            try:
                chunks, status = _run(self.app, environ, start_response)
            except Exception:
                entry["status"] = 500
                raise
            entry["status"] = status
            return chunks
