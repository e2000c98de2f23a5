#!/usr/bin/env python3
"""How many AWS calls `status`, `plan` and a converged `apply` make for many pipelines
in one region, and how long they take, against the local emulator.

Seeds the guide-built fleet, adds N more launch template groups on the same image (one
instance each), adopts each as running 12.3.0, writes a repository of N pipelines that
want 12.3.0, then runs each command once and counts the calls the emulator received.
Prints every figure next to its target with PASS or FAIL, and writes them as JSON to
target/bench/fleet-reads.json.

Run it through benches/fleet-reads.sh, which prepares the emulator's virtualenv.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "target" / "bench"
EMULATOR = REPO / "tests" / "emulator" / "emulator"
REGION = "us-east-1"
VERSION = "12.3.0"
SHA256 = "ab" * 32


def log(message: str) -> None:
    print(f"fleet-reads: {message}", file=sys.stderr, flush=True)


def control(endpoint: str, method: str, path: str) -> Any:
    request = urllib.request.Request(endpoint + path, method=method)
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read() or b"null")


def binary() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache" / "red5-rollout-target"))
    for profile in ("release", "debug"):
        candidate = target / profile / "red5-rollout"
        if candidate.is_file():
            return candidate
    raise SystemExit("no red5-rollout binary; build it first (cargo build --release)")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pipelines", type=int, default=50)
    parser.add_argument("--time-scale", type=float, default=0.05)
    args = parser.parse_args()
    n = args.pipelines
    bin_path = binary()
    log(f"binary {bin_path}")

    endpoint = subprocess.run(
        [str(EMULATOR), "start", "--time-scale", repr(args.time_scale)],
        check=True, stdout=subprocess.PIPE, text=True,
    ).stdout.strip()
    control(endpoint, "POST", "/moto-api/reset")
    subprocess.run([str(EMULATOR), "seed", "--endpoint", endpoint], check=True,
                   stdout=subprocess.DEVNULL)
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                    region_name=REGION)
    ec2 = session.client("ec2", endpoint_url=endpoint)
    autoscaling = session.client("autoscaling", endpoint_url=endpoint)
    seeded = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["red5pro-sm-asg"])
    group = seeded["AutoScalingGroups"][0]
    template = ec2.describe_launch_template_versions(LaunchTemplateName="red5pro-sm",
                                                     Versions=["1"])["LaunchTemplateVersions"][0]
    data = template["LaunchTemplateData"]
    log(f"adding {n} groups, each with an image of its own")
    images = []
    for i in range(n):
        images.append(ec2.copy_image(SourceImageId=data["ImageId"], SourceRegion=REGION,
                                     Name=f"red5pro-sm-{i:02}-{VERSION}")["ImageId"])
    for _ in range(600):
        states = {i["State"] for i in ec2.describe_images(ImageIds=images)["Images"]}
        if states == {"available"}:
            break
        time.sleep(0.2)
    for i in range(n):
        ec2.create_launch_template(LaunchTemplateName=f"sm-{i:02}",
                                   LaunchTemplateData={**data, "ImageId": images[i]})
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=f"sm-asg-{i:02}",
            LaunchTemplate={"LaunchTemplateName": f"sm-{i:02}", "Version": "1"},
            MinSize=1, MaxSize=2, DesiredCapacity=1,
            VPCZoneIdentifier=group["VPCZoneIdentifier"],
        )

    scratch = Path(tempfile.mkdtemp(prefix="fleet-reads-"))
    try:
        repo = scratch / "repo"
        (repo / "pipelines").mkdir(parents=True)
        (repo / "releases").mkdir()
        shipped = (REPO / "pipelines" / "stream-manager.yaml").read_text()
        for i in range(n):
            text = (shipped.replace("name: stream-manager\n", f"name: sm-{i:02}\n")
                    .replace("auto_scaling_group: red5pro-sm-asg", f"auto_scaling_group: sm-asg-{i:02}")
                    .replace("template: red5pro-sm\n", f"template: sm-{i:02}\n")
                    .replace("SM-red5pro-server-{{ version }}", "{{ pipeline }}-{{ version }}"))
            (repo / "pipelines" / f"sm-{i:02}.yaml").write_text(text)
        (repo / "releases" / f"{VERSION}.yaml").write_text(
            f"version: {VERSION}\nartifact:\n  url: https://downloads.example.com/red5pro-{VERSION}.zip\n"
            f"  sha256: {SHA256}\n")
        git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com",
               "-c", "commit.gpgsign=false"]
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
        subprocess.run(git + ["add", "-A"], cwd=repo, check=True)
        subprocess.run(git + ["commit", "-q", "-m", "fleet"], cwd=repo, check=True)

        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing",
                   AWS_SECRET_ACCESS_KEY="testing", AWS_REGION=REGION, CI="true",
                   AWS_EC2_METADATA_DISABLED="true",
                   RED5_ROLLOUT_AWS_CALLS_PER_SECOND="0")

        def run(*command: str) -> tuple[subprocess.CompletedProcess[str], float, dict[str, Any]]:
            control(endpoint, "DELETE", "/_emulator/calls")
            started = time.monotonic()
            done = subprocess.run([str(bin_path), *command], cwd=repo, env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            took = time.monotonic() - started
            calls = control(endpoint, "GET", "/_emulator/calls")
            if done.returncode != 0:
                raise SystemExit(f"{' '.join(command)} exited {done.returncode}: {done.stderr[-2000:]}")
            return done, took, calls

        log(f"adopting {n} groups as {VERSION}")
        for i in range(n):
            run("adopt", f"sm-{i:02}", "--version", VERSION, "--yes")
        # Wait for every instance to be in service, so that status reads a steady fleet.
        for _ in range(300):
            groups = autoscaling.describe_auto_scaling_groups(
                AutoScalingGroupNames=[f"sm-asg-{i:02}" for i in range(n)])["AutoScalingGroups"]
            if all(len(g["Instances"]) >= 1 for g in groups):
                break
            time.sleep(0.2)

        figures = []

        def figure(name: str, value: float, target: float, unit: str) -> None:
            ok = value <= target
            figures.append({"figure": name, "value": value, "target": target, "unit": unit,
                            "pass": ok})
            print(f"{name:<44} {value:>8.2f} {unit:<6} target <= {target:<6} {'PASS' if ok else 'FAIL'}")

        print(f"\n{n} pipelines on {n} groups in {REGION}, calls counted by the emulator\n")
        _, took, calls = run("status")
        figure("status: AWS calls", calls["total"], 60, "calls")
        figure("status: wall time", took, 2.0, "s")
        _, took, calls = run("plan")
        figure("plan: AWS calls", calls["total"], 60, "calls")
        figure("plan: wall time", took, 2.0, "s")
        _, took, calls = run("apply", "--yes")
        mutating = sum(calls["mutating_counts"].values())
        figure("apply (converged): mutating calls", mutating, 0, "calls")
        figure("apply (converged): reads", calls["total"] - mutating, 60, "calls")
        per_action = sorted(calls["counts"].items(), key=lambda kv: -kv[1])
        print("\napply's calls by kind: " + ", ".join(f"{k} {v}" for k, v in per_action))
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        (OUT_DIR / "fleet-reads.json").write_text(json.dumps(
            {"pipelines": n, "figures": figures, "apply_calls": dict(per_action)}, indent=2))
        return 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        subprocess.run([str(EMULATOR), "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    sys.exit(main())
