"""Start moto's server with the emulator's extensions and control API.

This does what ``moto.server.ThreadedMotoServer`` does (a threaded werkzeug
server around moto's ``DomainDispatcherApplication`` with moto's request
handler), with two differences: the application is wrapped by the gateway
that adds faults, call counting and the control API, and the server runs in
the main thread so SIGTERM and SIGINT stop it cleanly.

Once the socket is bound and serving, the endpoint URL is written to
``--endpoint-file`` (atomically) and printed as the only line on stdout.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Any

from .state import EMULATOR, TICK_INTERVAL


def install_extensions() -> None:
    from . import (
        autoscaling, iam_policies, images, instances, launch_templates, refresh, systems_manager,
    )

    iam_policies.install()
    instances.install()
    images.install()
    launch_templates.install()
    systems_manager.install()
    autoscaling.install()
    refresh.install()


def build_app() -> Any:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    from .gateway import Gateway

    return Gateway(DomainDispatcherApplication(create_backend_app))


def _tick_forever(stop: threading.Event) -> None:
    while not stop.wait(TICK_INTERVAL):
        with EMULATOR.lock:
            EMULATOR.tick()


def _write_atomically(path: str, text: str) -> None:
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temporary, path)


def serve(host: str, port: int, endpoint_file: str | None, pid_file: str | None,
          verbose: bool) -> None:
    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import make_server

    install_extensions()
    if not verbose:
        # One log line per request would flood the log of a long test run.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server(host, port, build_app(), threaded=True, request_handler=MotoRequestHandler)
    bound_port = server.server_address[1]
    endpoint = f"http://{host}:{bound_port}"

    stop = threading.Event()
    ticker = threading.Thread(target=_tick_forever, args=(stop,), name="emulator-clock", daemon=True)
    ticker.start()

    def shut_down(signum: int, frame: Any) -> None:
        # shutdown() waits for serve_forever() to return, which runs in this
        # very thread, so it must be called from another one.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shut_down)
    signal.signal(signal.SIGINT, shut_down)

    # The pid file comes first: whoever sees the endpoint file can rely on it.
    if pid_file:
        _write_atomically(pid_file, f"{os.getpid()}\n")
    if endpoint_file:
        _write_atomically(endpoint_file, endpoint + "\n")
    sys.stdout.write(endpoint + "\n")
    sys.stdout.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        stop.set()
        server.server_close()
        for path in (endpoint_file, pid_file):
            if path:
                try:
                    os.remove(path)
                except FileNotFoundError:
                    pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="red5_emulator serve", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--time-scale", type=float, default=None,
                        help="real seconds per emulated second (default 0.01)")
    parser.add_argument("--endpoint-file", default=None,
                        help="write the endpoint URL here once serving")
    parser.add_argument("--pid-file", default=None, help="write the process id here")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    if args.time_scale is not None:
        if args.time_scale <= 0:
            parser.error("--time-scale must be greater than zero")
        EMULATOR.time_scale = args.time_scale
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    serve(args.host, args.port, args.endpoint_file, args.pid_file, args.verbose)
    # Tearing down moto's many modules and models at interpreter exit takes
    # longer than serving ever did; everything worth keeping is written, so
    # leave at once.
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(0)
