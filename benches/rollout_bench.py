#!/usr/bin/env python3
"""The full Stream Manager rollout, by red5-rollout and by an aws-cli script, compared.

Three contenders roll the seeded fleet from Red5 Pro 12.3.0 to 12.4.0 against one local
emulator, one after the other, each on a freshly reset and seeded emulator with the same
delays:

- red5-rollout (without history): the fleet, built as the Red5 Pro guide builds one, is
  adopted as 12.3.0, then rolled out to 12.4.0;
- red5-rollout (history): the fleet is adopted as 12.3.0 and first rolled out to 12.3.1
  by red5-rollout, so that it has one earlier rollout in its AWS history (images the
  runner baked, a past instance refresh), then rolled out to 12.4.0;
- aws-cli: benches/awscli-rollout.sh, with aws-cli's waiters.

Only the last rollout to 12.4.0 is counted: the adoption and the earlier rollout are
not. From the emulator's call log and readiness events this measures, per contender:

- wall time, and how it splits into the time AWS itself was working on the critical path
  (each waited-for step, from the request to the moment the emulator made the result
  ready) and the contender's own overhead (everything else: process start-up, calls,
  and the time between AWS finishing a step and the contender noticing it);
- for each waited-for step, how long after AWS finished it the contender first polled
  again (so noticed it), against the target max(1 s, 10 % of the step's AWS time);
- AWS calls by kind, and mutating calls by action (the target is one per resource).

The targets for each red5-rollout contender: AWS calls at most 1.5 x aws-cli's with
history and 2.5 x without, wall time at most 0.70 x aws-cli's, each step noticed in time,
one mutating call per resource, and own overhead at most 2 s.

Run it through benches/rollout-vs-awscli.sh, which prepares the emulator's virtualenv and
installs aws-cli into it. The report goes to standard output and, as JSON, to
target/bench/rollout-vs-awscli.json; the contenders' own output goes next to it.

Only the standard library is used, so that the emulator's virtualenv is all it needs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
EMULATOR_CMD = REPO / "tests" / "emulator" / "emulator"
AWSCLI_SCRIPT = REPO / "benches" / "awscli-rollout.sh"
OUT_DIR = REPO / "target" / "bench"
REPORT_JSON = OUT_DIR / "rollout-vs-awscli.json"

PIPELINE = "stream-manager"
FROM_VERSION = "12.3.0"
# The release the history contender rolls out first (uncounted). It is not one of the
# repository's releases: the benchmark writes its file into its own repository.
MID_VERSION = "12.3.1"
TO_VERSION = "12.4.0"
REGION = "us-east-1"

# Mutating actions that a rollout makes on more than one resource: the call log does not
# name resources, so these are counted against how many resources take them. The runner
# tags the builder once its update succeeded and the image once it is available (with how
# long its bake took, for the next rollout's waits).
RESOURCES = {"ec2:CreateTags": 2}

RUNNER = "red5-rollout"
RUNNER_HISTORY = "red5-rollout (history)"
AWSCLI = "aws-cli"
RUNNERS = (RUNNER, RUNNER_HISTORY)
CONTENDERS = (RUNNER, RUNNER_HISTORY, AWSCLI)
# Names --only accepts besides the contenders' own, which has a space.
ONLY_ALIASES = {"red5-rollout-history": RUNNER_HISTORY, "history": RUNNER_HISTORY}
# Where each contender's output goes, in OUT_DIR.
STEMS = {RUNNER: "runner", RUNNER_HISTORY: "runner-history", AWSCLI: "awscli"}

# The targets the runner is held to, each runner contender against aws-cli's figures.
OVERHEAD_TARGET_S = 2.0
NOTICE_FLOOR_S = 1.0
NOTICE_FRACTION = 0.10
CALLS_RATIO_TARGET = {RUNNER_HISTORY: 1.5, RUNNER: 2.5}
WALL_RATIO_TARGET = 0.70

# Seeding bakes an image and boots three instances; at the realistic pace that alone
# takes minutes and measures nothing, so the seed runs at this pace and the benchmark's
# own pace is restored before a contender starts. Delays apply to transitions that start
# after they change, and the seed waits until everything it started has finished.
SEED_TIME_SCALE = 0.01

# How much earlier than a step's event the poll whose own processing made the step ready
# (and so saw it done) can be logged; see analyse. Tens of microseconds in practice.
SAME_TICK_S = 0.001


@dataclass(frozen=True)
class Step:
    """One step a rollout waits for: the call that asks AWS for something, the event the
    emulator records when that something is ready, and the call that polls for it."""

    name: str
    request: str
    event: str
    poll: str


STEPS = (
    Step("builder ready", "ec2:RunInstances", "ssm_agent_online", "ssm:DescribeInstanceInformation"),
    Step("update script", "ssm:SendCommand", "command_finished", "ssm:GetCommandInvocation"),
    Step("builder stopped", "ec2:StopInstances", "instance_stopped", "ec2:DescribeInstances"),
    Step("image available", "ec2:CreateImage", "image_available", "ec2:DescribeImages"),
    Step("instance refresh", "autoscaling:StartInstanceRefresh", "refresh_terminal",
         "autoscaling:DescribeInstanceRefreshes"),
)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the emulator -----------------------------------------------------------------------

# The emulator listens on loopback only; a proxy from the environment must not see it.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(method: str, url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with _HTTP.open(request, timeout=60) as response:
        raw = response.read()
    try:
        return json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError:
        # moto's reset answers with text of its own; only the status matters there.
        return {}


class Emulator:
    """An emulator process owned by this benchmark: started on a free port, stopped at
    the end whatever happens in between."""

    def __init__(self, time_scale: float, log_path: Path):
        self.time_scale = time_scale
        self.log_file = open(log_path, "ab")
        self.drain: threading.Thread | None = None
        # A session of its own keeps a Ctrl-C away from the server: it reaches the contender,
        # which cleans up through AWS calls and so needs the server a little longer.
        # stop() ends the server in every case.
        self.proc = subprocess.Popen(
            [str(EMULATOR_CMD), "start", "--foreground", "--port", "0",
             "--time-scale", repr(time_scale)],
            stdout=subprocess.PIPE, stderr=self.log_file, start_new_session=True,
        )
        self.endpoint = self._read_endpoint(timeout=180.0)
        # Anything the server prints later goes to the log, so its pipe never fills up.
        self.drain = threading.Thread(target=self._drain, daemon=True)
        self.drain.start()

    def _read_endpoint(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.stop()
                raise SystemExit(f"the emulator did not print its endpoint; see {self.log_file.name}")
            ready, _, _ = select.select([self.proc.stdout], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 1)
                if not chunk:
                    continue
                line += chunk
        endpoint = line.decode().strip()
        if not endpoint.startswith("http://"):
            self.stop()
            raise SystemExit(f"unexpected endpoint line from the emulator: {endpoint!r}")
        return endpoint

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for chunk in iter(lambda: self.proc.stdout.read(4096), b""):
            self.log_file.write(chunk)

    def control(self, method: str, path: str, body: Any = None) -> Any:
        return http(method, self.endpoint + path, body)

    def prepare(self) -> None:
        """A freshly seeded fleet with empty call and event logs, at the benchmark's pace."""
        self.control("POST", "/moto-api/reset")
        self.control("POST", "/_emulator/delays", {"time_scale": SEED_TIME_SCALE})
        try:
            seeded = subprocess.run(
                [str(EMULATOR_CMD), "seed", "--endpoint", self.endpoint],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
        finally:
            self.control("POST", "/_emulator/delays", {"time_scale": self.time_scale})
        if seeded.returncode != 0:
            raise SystemExit(f"seeding the emulator failed:\n{seeded.stderr}")
        self.control("DELETE", "/_emulator/calls")
        self.control("DELETE", "/_emulator/events")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # The log is closed only once the drain has read the pipe to its end.
        if self.drain is not None:
            self.drain.join(timeout=5)
        self.log_file.close()


# -- what is compared -------------------------------------------------------------------


def pick_binary(given: str | None) -> tuple[Path, str]:
    """The red5-rollout binary and which build it is. Without --binary: the release build
    if it is at least as new as the sources, else the debug build if that is, else the
    newest of the two with a warning, so a stale build is never measured silently."""
    if given:
        path = Path(given).resolve()
        if not os.access(path, os.X_OK):
            raise SystemExit(f"--binary {given} is not an executable file")
        return path, "given with --binary"
    dirs = []
    if os.environ.get("CARGO_TARGET_DIR"):
        dirs.append(REPO / os.environ["CARGO_TARGET_DIR"])
    dirs += [Path.home() / ".cache" / "red5-rollout-target", REPO / "target"]
    found = [
        (d / profile / "red5-rollout", profile)
        for d in dirs for profile in ("release", "debug")
        if (d / profile / "red5-rollout").is_file()
    ]
    if not found:
        raise SystemExit(
            "no red5-rollout binary found; build it with `CARGO_TARGET_DIR=$HOME/.cache/"
            "red5-rollout-target cargo build --release` or pass --binary PATH"
        )
    sources = [REPO / "Cargo.toml", REPO / "Cargo.lock", *(REPO / "src").rglob("*.rs")]
    newest_source = max(p.stat().st_mtime for p in sources if p.exists())
    for path, profile in found:
        if path.stat().st_mtime >= newest_source:
            return path, f"{profile} build"
    path, profile = max(found, key=lambda f: f[0].stat().st_mtime)
    log(f"warning: every red5-rollout build is older than the sources; using {path}")
    return path, f"{profile} build, older than the sources"


@dataclass(frozen=True)
class Release:
    version: str
    url: str
    sha256: str


def read_release(version: str) -> Release:
    """The release file's version, artifact URL and checksum. The files are flat enough
    that three patterns read them, which keeps this free of a YAML dependency."""
    return read_release_text((REPO / "releases" / f"{version}.yaml").read_text(), version)


def read_release_text(text: str, version: str) -> Release:
    def field(pattern: str) -> str:
        match = re.search(pattern, text, re.MULTILINE)
        if not match:
            raise SystemExit(f"releases/{version}.yaml: cannot read {pattern}")
        return match.group(1).strip().strip("'\"")

    return Release(
        version=field(r"^version:\s*(\S+)"),
        url=field(r"^\s+url:\s*(\S+)"),
        sha256=field(r"^\s+sha256:\s*(\S+)"),
    )


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=rollout bench", "-c", "user.email=bench@localhost",
         "-c", "init.defaultBranch=main", *args],
        cwd=repo, check=True, stdout=subprocess.PIPE, text=True,
    ).stdout.strip()


def mid_release_text() -> str:
    """releases/12.3.1.yaml, shaped like the shipped release files: 12.3.0's file with the
    version, artifact name and checksum of 12.3.1 (the emulator downloads nothing)."""
    text = (REPO / "releases" / f"{FROM_VERSION}.yaml").read_text()
    old = read_release(FROM_VERSION)
    sha256 = hashlib.sha256(f"red5pro-server-{MID_VERSION}-release.zip".encode()).hexdigest()
    text = text.replace(old.sha256, sha256).replace(old.version, MID_VERSION)
    if read_release_text(text, MID_VERSION).version != MID_VERSION:
        raise SystemExit(f"could not derive releases/{MID_VERSION}.yaml from {FROM_VERSION}'s")
    return text


def make_repo(root: Path, name: str, versions: tuple[str, ...]) -> tuple[Path, str]:
    """A git repository holding what the rollout applies: the shipped pipeline and the
    releases it chooses between, committed (the runner reads HEAD, not the work tree).
    The pipeline tracks "^12", so the newest release committed is the one apply rolls out."""
    repo = root / name
    (repo / "pipelines").mkdir(parents=True)
    (repo / "releases").mkdir()
    shutil.copy(REPO / "pipelines" / f"{PIPELINE}.yaml", repo / "pipelines")
    for version in versions:
        shutil.copy(REPO / "releases" / f"{version}.yaml", repo / "releases")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"Roll {PIPELINE} to {versions[-1]}")
    return repo, git(repo, "rev-parse", "HEAD")


def commit_release(repo: Path, version: str, text: str | None = None) -> str:
    """Adds releases/<version>.yaml (the shipped file unless text is given) in a commit
    of its own, and returns the commit."""
    path = repo / "releases" / f"{version}.yaml"
    if text is None:
        shutil.copy(REPO / "releases" / f"{version}.yaml", path)
    else:
        path.write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"Roll {PIPELINE} to {version}")
    return git(repo, "rev-parse", "HEAD")


def aws_env(scratch: Path, venv_bin: Path) -> dict[str, str]:
    """The environment both contenders run in: dummy credentials, the region, no shared
    config or profile from the machine, no instance metadata lookups, loopback unproxied."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION=REGION,
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=str(scratch / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(scratch / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        PATH=f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY", ""), "127.0.0.1", "localhost"]))
    env["NO_PROXY"] = env["no_proxy"] = no_proxy
    return env


def run_contender(name: str, cmd: list[str], cwd: Path, env: dict[str, str],
                  stem: str | None = None) -> dict[str, Any]:
    stem = stem or STEMS[name]
    stdout_path = OUT_DIR / f"{stem}.stdout"
    stderr_path = OUT_DIR / f"{stem}.stderr"
    log(f"{name}: {' '.join(cmd)}")
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        started = time.time()
        t0 = time.monotonic()
        code = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=err).returncode
        wall = time.monotonic() - t0
    log(f"{name}: exit code {code} after {wall:.1f} s")
    return {
        # Other work on the machine slows process start-up and calls, so say how busy it was.
        "load_average_1m_after": os.getloadavg()[0],
        "command": cmd,
        "exit_code": code,
        "wall_s": wall,
        "started": started,
        "stdout": str(stdout_path),
        "stderr": str(stderr_path),
    }


def runner_events(stderr_path: str) -> list[dict[str, Any]]:
    """The JSON events of `apply --output json`, one per line of its stderr."""
    events = []
    with open(stderr_path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(event, dict):
                events.append(event)
    return events


def runner_stages(stderr_path: str) -> list[dict[str, Any]]:
    """The runner's stage-finished events: which stage took how long, and how it ended."""
    return [
        {
            "stage": event.get("stage"),
            "outcome": (event.get("outcome") or {}).get("outcome"),
            "elapsed_s": event.get("elapsed"),
        }
        for event in runner_events(stderr_path) if event.get("event") == "stage-finished"
    ]


def runner_plan(stderr_path: str) -> dict[str, Any]:
    """What the run planned for the pipeline: kind, from and to (docs/plan-schema.md)."""
    for event in runner_events(stderr_path):
        if event.get("event") == "planned":
            plan = event.get("plan") if isinstance(event.get("plan"), dict) else event
            if plan.get("pipeline") in (None, PIPELINE):
                return {"kind": plan.get("kind"), "from": plan.get("from"), "to": plan.get("to")}
    return {}


def tail(path: str, lines: int = 15) -> str:
    with open(path, encoding="utf-8", errors="replace") as text:
        return "".join(text.readlines()[-lines:])


def adopt(binary: Path, repo: Path, env: dict[str, str], endpoint: str) -> None:
    """The seeded fleet is built as the Red5 Pro guide builds one, with none of the
    runner's tags: it is adopted once, as an operator does, before any rollout."""
    done = subprocess.run(
        [str(binary), "adopt", PIPELINE, "--version", FROM_VERSION, "--yes",
         "--endpoint-url", endpoint],
        cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"red5-rollout adopt --version {FROM_VERSION} failed with exit code "
                         f"{done.returncode}:\n{done.stderr}")


def earlier_rollout(binary: Path, repo: Path, env: dict[str, str], endpoint: str) -> dict[str, Any]:
    """The history contender's uncounted rollout of the adopted fleet to MID_VERSION, the
    newest release at the repository's HEAD then. It must succeed and must have been a
    rollout from FROM_VERSION to MID_VERSION; anything else ends the benchmark."""
    name = f"{RUNNER_HISTORY} earlier rollout to {MID_VERSION}"
    cmd = [str(binary), "apply", PIPELINE, "--yes", "--output", "json", "--endpoint-url", endpoint]
    run = run_contender(name, cmd, repo, env, stem=f"{STEMS[RUNNER_HISTORY]}-{MID_VERSION}")
    plan = runner_plan(run["stderr"])
    expected = {"kind": "rollout", "from": FROM_VERSION, "to": MID_VERSION}
    if run["exit_code"] != 0 or plan != expected:
        raise SystemExit(
            f"{name} did not succeed: exit code {run['exit_code']}, plan {plan or 'not found'} "
            f"(expected {expected}); see {run['stderr']}. Its last lines:\n{tail(run['stderr'])}")
    return {"exit_code": run["exit_code"], "wall_s": run["wall_s"], "plan": plan,
            "stages": runner_stages(run["stderr"]), "stderr": run["stderr"]}


# -- analysis ---------------------------------------------------------------------------


def notice_target(aws_s: float) -> float:
    return max(NOTICE_FLOOR_S, NOTICE_FRACTION * aws_s)


def analyse(calls: list[dict[str, Any]], events: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    calls = sorted(calls, key=lambda c: c["time"])
    events = sorted(events, key=lambda e: e["time"])
    steps = []
    for step in STEPS:
        row: dict[str, Any] = {"step": step.name, "request": step.request,
                               "event": step.event, "poll": step.poll}
        request = next((c for c in calls if c["key"] == step.request
                        and (c.get("status") or 200) < 400), None)
        ready = request and next((e for e in events if e["kind"] == step.event
                                  and e["time"] >= request["time"]), None)
        if not request or not ready:
            row["missing"] = f"no {step.request} call" if not request else f"no {step.event} event"
            steps.append(row)
            continue
        aws_s = ready["time"] - request["time"]
        # The emulator logs a call, then applies the transitions due, then answers it: a poll
        # that arrives when its step is due is logged a few microseconds before the step's
        # event and is answered with the step done, so it counts as the poll that noticed it.
        noticed = next((c for c in calls if c["key"] == step.poll
                        and c["time"] >= ready["time"] - SAME_TICK_S), None)
        until = noticed["time"] if noticed else float("inf")
        row.update(
            aws_s=aws_s,
            resource=ready.get("id"),
            status=ready.get("status"),
            noticed_after_s=max(0.0, noticed["time"] - ready["time"]) if noticed else None,
            target_s=notice_target(aws_s),
            # Every call made while waiting is a poll of this step, whichever action it is
            # (the runner checks the instance state before asking SSM, for instance).
            polls=sum(1 for c in calls if request["time"] < c["time"] <= until),
        )
        row["pass"] = row["noticed_after_s"] is not None and row["noticed_after_s"] <= row["target_s"]
        steps.append(row)
    aws_total = sum(s.get("aws_s", 0.0) for s in steps)
    polls_total = sum(s.get("polls", 0) for s in steps)
    by_kind = Counter(c["key"] for c in calls)
    errors = Counter(c["key"] for c in calls if (c.get("status") or 200) >= 400)
    mutating = Counter(c["key"] for c in calls if c["mutating"])
    return {
        "wall_s": wall,
        "aws_s": aws_total,
        "overhead_s": wall - aws_total,
        "steps": steps,
        "calls_total": len(calls),
        "calls_polling": polls_total,
        "calls_other": len(calls) - polls_total,
        "calls_by_kind": dict(sorted(by_kind.items(), key=lambda kv: (-kv[1], kv[0]))),
        "mutating_by_action": dict(sorted(mutating.items())),
        "mutating_repeated": sorted(k for k, n in mutating.items() if n > RESOURCES.get(k, 1)),
        # Answers with an error status: an SSM invocation not visible yet, a throttle.
        "error_answers": dict(sorted(errors.items())),
    }


# -- report -----------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def secs(value: float | None, decimals: int = 1) -> str:
    return "-" if value is None else f"{value:.{decimals}f} s"


def print_contender(name: str, result: dict[str, Any]) -> None:
    print()
    print(f"== {name}")
    if result["exit_code"] != 0:
        print(f"   the rollout FAILED with exit code {result['exit_code']}; see {result['stderr']}")
    line = (f"   wall {secs(result['wall_s'])} = AWS working {secs(result['aws_s'])}"
            f" + own overhead {secs(result['overhead_s'])}")
    load = f"   (machine load average over the last minute: {result['load_average_1m_after']:.1f})"
    if name in RUNNERS:
        line += f"   (target <= {OVERHEAD_TARGET_S:.0f} s: {verdict(result['overhead_s'] <= OVERHEAD_TARGET_S)})"
    print(line)
    print(load)
    earlier = result.get("earlier_rollout")
    if earlier:
        plan = result.get("plan") or {}
        print(f"   history: rolled out {earlier['plan']['from']} -> {earlier['plan']['to']} first"
              f" (not counted: exit code {earlier['exit_code']}, {secs(earlier['wall_s'])});"
              f" the counted run planned {plan.get('kind')} {plan.get('from')} -> {plan.get('to')}")
    print()
    print(f"   {'step':<18}{'AWS time':>10}{'noticed after':>15}{'target':>9}{'polls':>7}  result")
    for s in result["steps"]:
        if "missing" in s:
            print(f"   {s['step']:<18}{'':>10}{'':>15}{'':>9}{'':>7}  FAIL ({s['missing']})")
            continue
        # Two decimals here: a step noticed 10 ms too late must not read "1.5 s > 1.5 s".
        print(f"   {s['step']:<18}{secs(s['aws_s']):>10}{secs(s['noticed_after_s'], 2):>15}"
              f"{secs(s['target_s'], 2):>9}{s['polls']:>7}  {verdict(s['pass'])}")
    if result.get("stages"):
        print()
        print("   stages: " + ", ".join(
            f"{st['stage']} {st['outcome']} {st['elapsed_s']:.1f} s"
            if isinstance(st.get("elapsed_s"), (int, float)) else f"{st['stage']} {st['outcome']}"
            for st in result["stages"]))
    print()
    print(f"   AWS calls: {result['calls_total']} = {result['calls_polling']} polls while waiting"
          f" on the steps above + {result['calls_other']} around them")
    if result["error_answers"]:
        print("   answered with an error status: " + ", ".join(
            f"{key} x{count}" for key, count in result["error_answers"].items()))
    for key, count in result["calls_by_kind"].items():
        print(f"     {count:>4}  {key}")
    print()
    repeated = result["mutating_repeated"]
    print(f"   mutating calls by action (target: one per resource): "
          f"{verdict(not repeated)}{'  repeated: ' + ', '.join(repeated) if repeated else ''}")
    for key, count in result["mutating_by_action"].items():
        flag = "  <- more than once" if count > 1 else ""
        print(f"     {count:>4}  {key}{flag}")


def ratio_line(what: str, value: float, baseline: float, target: float, target_text: str,
               unit: str = "") -> tuple[str, bool]:
    """"calls 62 vs aws-cli 30 = 2.07x (target <= 2.5x)" and whether it is within."""
    ratio = value / baseline if baseline > 0 else float("inf")
    fmt = (lambda v: f"{v:.1f} s") if unit == "s" else (lambda v: f"{v:g}")
    return (f"{what} {fmt(value)} vs aws-cli {fmt(baseline)} = {ratio:.2f}x (target <= {target_text}x)",
            ratio <= target)


def build_targets(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each runner contender's targets. A rollout that failed fails them all, and a ratio
    to aws-cli's figures needs an aws-cli rollout that succeeded."""
    awscli = results.get(AWSCLI)
    awscli_ok = bool(awscli) and awscli["exit_code"] == 0
    targets = []
    for name in RUNNERS:
        runner = results.get(name)
        if not runner:
            continue
        ok = runner["exit_code"] == 0
        failed = "" if ok else f" (the rollout failed with exit code {runner['exit_code']})"

        def add(target: str, value: str, passed: bool, name: str = name) -> None:
            targets.append({"contender": name, "target": target, "value": value + failed,
                            "pass": ok and passed})

        if awscli:
            if name in CALLS_RATIO_TARGET:
                limit = CALLS_RATIO_TARGET[name]
                value, within = ratio_line("calls", runner["calls_total"], awscli["calls_total"], limit,
                                           f"{limit:g}")
                add(f"AWS calls <= {limit:g} x aws-cli's", value
                    + ("" if awscli_ok else " (aws-cli's rollout failed)"), within and awscli_ok)
            value, within = ratio_line("wall", runner["wall_s"], awscli["wall_s"], WALL_RATIO_TARGET,
                                       f"{WALL_RATIO_TARGET:.2f}", "s")
            add(f"wall time <= {WALL_RATIO_TARGET:.2f} x aws-cli's", value
                + ("" if awscli_ok else " (aws-cli's rollout failed)"), within and awscli_ok)
        late = [s for s in runner["steps"] if not s.get("pass")]
        add("notices each step within max(1 s, 10 % of its AWS time)",
            f"all {len(runner['steps'])} steps in time" if not late else "late: " + "; ".join(
                f"{s['step']} {secs(s.get('noticed_after_s'), 2)} > {secs(s.get('target_s'), 2)}"
                if "missing" not in s else f"{s['step']} ({s['missing']})" for s in late),
            not late)
        add("one mutating call per resource",
            "repeated: " + ", ".join(runner["mutating_repeated"])
            if runner["mutating_repeated"] else "no action repeated",
            not runner["mutating_repeated"])
        add(f"own overhead <= {OVERHEAD_TARGET_S:.0f} s for the whole rollout",
            f"overhead {runner['overhead_s']:.1f} s (target <= {OVERHEAD_TARGET_S:.0f} s)",
            runner["overhead_s"] <= OVERHEAD_TARGET_S)
    return targets


def waiter_aligned(delays: dict[str, float]) -> bool:
    """Whether every EC2 wait of the rollout lasts, in real seconds, a whole number of
    aws-cli's 15 s waiter periods and the SSM command a whole number of 5 s ones. Then each of aws-cli's polls
    lands a process start-up after the step ended, which flatters it."""
    scale = delays.get("time_scale", 1.0)

    def whole(wait: float, period: float) -> bool:
        periods = wait * scale / period
        return periods >= 1 and abs(periods - round(periods)) < 0.01

    ec2_waits = (delays["instance_running"] + delays["ssm_agent"], delays["instance_stop"],
                 delays["image_available"])
    return all(whole(w, 15.0) for w in ec2_waits) and whole(delays["ssm_command"], 5.0)


def print_report(report: dict[str, Any]) -> None:
    delays = report["delays"]
    print()
    print(f"rollout of {PIPELINE} {FROM_VERSION} -> {TO_VERSION}: red5-rollout vs aws-cli "
          f"against the emulator at time scale {report['time_scale']}")
    print(f"contenders: {RUNNER!r} on the seeded fleet adopted as {FROM_VERSION} (no history);"
          f" {RUNNER_HISTORY!r} on the adopted fleet it first rolled out to {MID_VERSION};"
          f" {AWSCLI!r}. Adoption and the rollout to {MID_VERSION} are not counted")
    print("emulated delays (s, before scaling): " + ", ".join(
        f"{k} {v:g}" for k, v in delays.items() if k != "time_scale"))
    print(f"red5-rollout: {report['binary']} ({report['binary_build']})")
    print(f"aws-cli:      {report['awscli_version']}")
    print("noticed after = time from AWS finishing a step (emulator event) to the contender's"
          " next poll of it; target max(1 s, 10 % of the step's AWS time)")
    if waiter_aligned(delays):
        print("note: these delays are whole multiples of aws-cli's waiter periods (15 s for EC2,"
              " 5 s for SSM), so its polls land just after each step ends: its best case. Pass"
              " --delays with other values to see its usual lag of up to one period.")
    for name, result in report["contenders"].items():
        print_contender(name, result)
    print()
    print("== targets")
    if not report["targets"]:
        print("   (the targets concern red5-rollout, which did not run)")
    elif AWSCLI not in report["contenders"]:
        print("   (aws-cli did not run: the targets relative to its figures are left out)")
    for t in report["targets"]:
        print(f"   {verdict(t['pass'])}  {t['contender']}: {t['target']}: {t['value']}")
    comparisons = report.get("comparison") or {}
    if comparisons:
        print()
    for comparison in comparisons.values():
        print(comparison["line"])


def compare(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each runner contender against aws-cli, by contender name."""
    awscli = results.get(AWSCLI)
    if not awscli:
        return {}

    def delta(a: float, b: float) -> str:
        return f"{a - b:+.1f} s"

    comparisons = {}
    for name in RUNNERS:
        runner = results.get(name)
        if not runner:
            continue
        line = (
            f"{name} vs aws-cli: wall {runner['wall_s']:.1f} s vs {awscli['wall_s']:.1f} s "
            f"({delta(runner['wall_s'], awscli['wall_s'])}), "
            f"overhead {runner['overhead_s']:.1f} s vs {awscli['overhead_s']:.1f} s "
            f"({delta(runner['overhead_s'], awscli['overhead_s'])}), "
            f"AWS calls {runner['calls_total']} vs {awscli['calls_total']}"
        )
        comparisons[name] = {
            "line": line,
            "wall_s": [runner["wall_s"], awscli["wall_s"]],
            "overhead_s": [runner["overhead_s"], awscli["overhead_s"]],
            "calls_total": [runner["calls_total"], awscli["calls_total"]],
        }
    return comparisons


# -- main -------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--time-scale", type=float, default=1.0,
                        help="emulated AWS pace: 1.0 (default) is AWS's real pace")
    parser.add_argument("--binary", help="the red5-rollout binary (default: the freshest build)")
    parser.add_argument("--delays", type=json.loads, default=None, metavar="JSON",
                        help="emulated delays to merge before the contenders run, e.g. "
                             "'{\"instance_stop\": 22, \"image_available\": 67}'")
    parser.add_argument("--only", choices=CONTENDERS, metavar="NAME",
                        type=lambda name: ONLY_ALIASES.get(name, name),
                        help="run one contender only (for trying a change quickly): "
                             + ", ".join(repr(c) for c in CONTENDERS)
                             + f" ({' or '.join(k for k, v in ONLY_ALIASES.items() if v == RUNNER_HISTORY)}"
                             f" for {RUNNER_HISTORY!r})")
    args = parser.parse_args()
    if args.time_scale <= 0:
        parser.error("--time-scale must be greater than zero")

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    binary, build = pick_binary(args.binary)
    venv_bin = Path(sys.executable).parent
    aws = venv_bin / "aws"
    if not aws.exists():
        raise SystemExit(f"no aws-cli at {aws}; run benches/rollout-vs-awscli.sh")
    release = read_release(TO_VERSION)
    log(f"red5-rollout: {binary} ({build})")

    scratch = Path(tempfile.mkdtemp(prefix="rollout-bench-"))
    emulator = None
    try:
        repo, commit = make_repo(scratch, "rollout-repo", (FROM_VERSION, TO_VERSION))
        env = aws_env(scratch, venv_bin)
        # The runner's call budget (5 calls per second at AWS's pace) runs as fast as the
        # emulated AWS does.
        env["RED5_ROLLOUT_AWS_CALLS_PER_SECOND"] = repr(5.0 / args.time_scale)
        awscli_version = subprocess.run(
            [str(aws), "--version"], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        ).stdout.strip()
        emulator = Emulator(args.time_scale, OUT_DIR / "emulator.log")
        log(f"emulator at {emulator.endpoint}, time scale {args.time_scale}")
        if args.delays:
            emulator.control("POST", "/_emulator/delays", args.delays)
        delays = emulator.control("GET", "/_emulator/delays")["delays"]

        # The history contender's repository starts with FROM_VERSION only, so that each
        # apply rolls out the newest release committed then: MID_VERSION, then TO_VERSION.
        # Its git history is FROM_VERSION -> MID_VERSION -> TO_VERSION.
        history_repo, _ = make_repo(scratch, "rollout-repo-history", (FROM_VERSION,))
        apply = [str(binary), "apply", PIPELINE, "--yes", "--output", "json",
                 "--endpoint-url", emulator.endpoint]
        contenders = {
            RUNNER: (apply, repo),
            RUNNER_HISTORY: (apply, history_repo),
            AWSCLI: (["bash", str(AWSCLI_SCRIPT), "--endpoint-url", emulator.endpoint,
                      "--version", release.version, "--artifact-url", release.url,
                      "--artifact-sha256", release.sha256, "--commit", commit], scratch),
        }
        results: dict[str, dict[str, Any]] = {}
        for name, (cmd, cwd) in contenders.items():
            if args.only and name != args.only:
                continue
            log(f"{name}: resetting and seeding the emulator")
            emulator.prepare()
            earlier = None
            if name in RUNNERS:
                adopt(binary, cwd, env, emulator.endpoint)
            if name == RUNNER_HISTORY:
                # One earlier rollout of the runner's own, at the benchmark's own pace: its
                # timings and its refresh are the history the counted run's waits read.
                commit_release(cwd, MID_VERSION, mid_release_text())
                earlier = earlier_rollout(binary, cwd, env, emulator.endpoint)
                commit_release(cwd, TO_VERSION)
            if name in RUNNERS:
                emulator.control("DELETE", "/_emulator/calls")
                emulator.control("DELETE", "/_emulator/events")
            run = run_contender(name, cmd, cwd, env)
            calls = emulator.control("GET", "/_emulator/calls")["calls"]
            events = emulator.control("GET", "/_emulator/events")["events"]
            result = {**run, **analyse(calls, events, run["wall_s"])}
            if name in RUNNERS:
                result["stages"] = runner_stages(run["stderr"])
                result["plan"] = runner_plan(run["stderr"])
                expected_from = MID_VERSION if name == RUNNER_HISTORY else FROM_VERSION
                if result["plan"] != {"kind": "rollout", "from": expected_from, "to": TO_VERSION}:
                    log(f"warning: {name} planned {result['plan'] or 'nothing found'}, not a rollout "
                        f"{expected_from} -> {TO_VERSION}; see {run['stderr']}")
            if earlier:
                result["earlier_rollout"] = earlier
            result["raw"] = {"calls": calls, "events": events}
            results[name] = result
    finally:
        if emulator is not None:
            emulator.stop()
        shutil.rmtree(scratch, ignore_errors=True)

    report = {
        "time_scale": args.time_scale,
        "delays": delays,
        "binary": str(binary),
        "binary_build": build,
        "awscli_version": awscli_version,
        "contenders": results,
        "targets": build_targets(results),
        "comparison": compare(results),
    }
    print_report(report)
    REPORT_JSON.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nreport written to {REPORT_JSON.relative_to(REPO)}")
    # The figures are the result; only a rollout that did not complete is an error.
    return 0 if all(r["exit_code"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
