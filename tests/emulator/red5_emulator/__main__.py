"""Command line of the emulator's Python side: ``serve``, ``seed`` and ``control``.

The bash script tests/emulator/emulator is the entry point people use; it
runs these inside the emulator's virtualenv.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request

USAGE = "usage: python -m red5_emulator {serve|seed|control} [options]\n"


def control(argv: list[str]) -> int:
    """Send one request to the control API and print its JSON answer."""
    parser = argparse.ArgumentParser(prog="red5_emulator control")
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("method", choices=("GET", "POST", "DELETE"))
    parser.add_argument("path", help="for example /_emulator/faults")
    parser.add_argument("body", nargs="?", default=None, help="a JSON document to POST")
    args = parser.parse_args(argv)
    data = None
    if args.body is not None:
        try:
            json.loads(args.body)
        except json.JSONDecodeError as error:
            sys.stderr.write(f"emulator: the body is not valid JSON: {error}\n")
            return 2
        data = args.body.encode("utf-8")
    request = urllib.request.Request(
        args.endpoint.rstrip("/") + args.path, data=data, method=args.method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            sys.stdout.write(json.dumps(json.load(response), indent=2) + "\n")
            return 0
    except urllib.error.HTTPError as error:
        sys.stderr.write(f"emulator: {error.code} {error.read().decode('utf-8', 'replace')}\n")
        return 1
    except urllib.error.URLError as error:
        sys.stderr.write(f"emulator: cannot reach {args.endpoint}: {error.reason}\n")
        return 1


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("serve", "seed", "control"):
        sys.stderr.write(USAGE)
        return 2
    if argv[0] == "serve":
        from .server import main as serve_main

        return serve_main(argv[1:])
    if argv[0] == "seed":
        from .seed import main as seed_main

        return seed_main(argv[1:])
    return control(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
