//! The real binary on real git repositories: output, errors and exit codes.

use crate::support::{git, shipped_repo};
use std::path::Path;
use std::process::{Command, Output};

fn red5_rollout(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_red5-rollout"))
        .args(args)
        .current_dir(dir)
        .env_remove("RED5_ROLLOUT_REPO")
        .output()
        .expect("the binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const FLEET: &str = r#"{"fleets": [
  {"group": "red5pro-sm-asg", "desired_capacity": 2, "running_version": "12.3.0", "current_config": "1",
   "images": [{"id": "ami-0123456789abcdef0", "version": "12.3.0", "state": "available"}],
   "launch_configs": [{"id": "1", "version": "12.3.0", "image_id": "ami-0123456789abcdef0"}]},
  {"group": "red5pro-sm-legacy-asg", "desired_capacity": 1, "running_version": "12.4.0"}
]}"#;

#[test]
fn validate_accepts_the_shipped_content() {
    let repo = shipped_repo();
    let out = red5_rollout(repo.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("ok: 2 pipeline(s) and 2 release(s) at "),
        "{}",
        stdout(&out)
    );
}

#[test]
fn validate_lists_every_problem_with_file_line_and_hint_and_exits_1() {
    let repo = shipped_repo();
    std::fs::write(
        repo.path().join("releases/12.5.0.yaml"),
        "version: 12.5.0\nartifact:\n  url: http://downloads.example.com/red5pro.zip\n",
    )
    .unwrap();
    std::fs::write(
        repo.path().join("releases/12.6.0.yaml"),
        "version: 12.6\nartifact:\n  url: https://x.example.com/a.zip\n  sha256: abc\n",
    )
    .unwrap();
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "bad releases"]);
    let out = red5_rollout(repo.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let expected = [
        "releases/12.5.0.yaml:2:1: artifact has no sha256",
        "releases/12.5.0.yaml:3:8: artifact.url must use https:// or s3://, not http://",
        "  hint: host the artifact on HTTPS or S3: a plain download can be altered in transit",
        "releases/12.6.0.yaml:1:10: version `12.6` is not semver (unexpected end of input while parsing minor version number)",
        "releases/12.6.0.yaml:4:11: artifact.sha256 must be 64 hex digits, found 3 characters",
        "error: 4 problem(s) in the repository",
    ];
    for line in expected {
        assert!(err.contains(line), "missing {line:?} in:\n{err}");
    }
}

#[test]
fn validate_reads_what_is_committed_not_the_working_tree() {
    let repo = shipped_repo();
    std::fs::write(repo.path().join("releases/12.4.0.yaml"), "version: [").unwrap();
    let out = red5_rollout(repo.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = red5_rollout(repo.path(), &["validate", "--rev", "HEAD~0"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn an_unknown_revision_exits_7_with_a_hint() {
    let repo = shipped_repo();
    let out = red5_rollout(repo.path(), &["validate", "--rev", "no-such-branch"]);
    assert_eq!(out.status.code(), Some(7));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: revision `no-such-branch` does not name a commit\n  caused by: "),
        "{err}"
    );
    assert!(
        err.contains("  hint: pass a commit, branch or tag that exists locally"),
        "{err}"
    );
}

#[test]
fn plan_prints_text_markdown_and_json_from_a_fleet_state_file() {
    let repo = shipped_repo();
    let fleet = repo.path().join("fleet.json");
    std::fs::write(&fleet, FLEET).unwrap();
    let fleet = fleet.to_str().unwrap();

    let out = red5_rollout(repo.path(), &["plan", "--fleet-state", fleet]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("stream-manager (red5pro-sm-asg in us-east-1): rollout 12.3.0 -> 12.4.0"),
        "{text}"
    );
    assert!(
        text.contains("stream-manager-legacy (red5pro-sm-legacy-asg in us-east-1): "),
        "{text}"
    );

    let out = red5_rollout(
        repo.path(),
        &[
            "plan",
            "stream-manager",
            "--fleet-state",
            fleet,
            "--format",
            "markdown",
        ],
    );
    assert!(
        stdout(&out)
            .starts_with("## red5-rollout plan\n\n### `stream-manager`: rollout 12.3.0 → 12.4.0")
    );

    let out = red5_rollout(
        repo.path(),
        &[
            "plan",
            "stream-manager",
            "--fleet-state",
            fleet,
            "--format",
            "json",
        ],
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["schema"], "red5-rollout/plan/v1");
    assert_eq!(json["plans"][0]["kind"], "rollout");
    assert_eq!(json["plans"][0]["stages"][0]["stage"], "launch-builder");
    assert_eq!(json["plans"].as_array().unwrap().len(), 1);
}

#[test]
fn plan_shows_the_single_instance_trap_at_its_line_and_exits_1() {
    let repo = shipped_repo();
    let path = repo.path().join("pipelines/stream-manager-legacy.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("max_healthy_percentage: 200", "max_healthy_percentage: 100");
    std::fs::write(&path, &text).unwrap();
    git(repo.path(), &["commit", "-qam", "max healthy 100"]);
    let fleet = repo.path().join("fleet.json");
    std::fs::write(
        &fleet,
        FLEET.replace(
            "\"running_version\": \"12.4.0\"",
            "\"running_version\": \"12.3.0\"",
        ),
    )
    .unwrap();
    let out = red5_rollout(
        repo.path(),
        &[
            "plan",
            "stream-manager-legacy",
            "--fleet-state",
            fleet.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let line = text
        .lines()
        .position(|l| l.contains("max_healthy_percentage"))
        .unwrap()
        + 1;
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!("pipelines/stream-manager-legacy.yaml:{line}:27: group red5pro-sm-legacy-asg has one instance")),
        "{err}"
    );
    assert!(
        err.contains("hint: set min_healthy_percentage: 100 and max_healthy_percentage: 200"),
        "{err}"
    );
}

#[test]
fn plan_refuses_unknown_pipelines_and_missing_fleet_state() {
    let repo = shipped_repo();
    let fleet = repo.path().join("fleet.json");
    std::fs::write(&fleet, FLEET).unwrap();
    let out = red5_rollout(
        repo.path(),
        &["plan", "nope", "--fleet-state", fleet.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with(
        "error: no pipeline named `nope` (known: stream-manager-legacy, stream-manager)"
    ));

    std::fs::write(&fleet, "{\"fleets\": [{\"group\": 3}]}").unwrap();
    let out = red5_rollout(
        repo.path(),
        &["plan", "--fleet-state", fleet.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(7));
    assert!(
        stderr(&out).contains("error: cannot read the fleet state file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn help_teaches_with_examples_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let out = red5_rollout(dir.path(), &["--help"]);
    let help = stdout(&out);
    assert!(help.contains("Exit codes:"), "{help}");
    assert!(
        help.contains("6  another run holds the group's lock"),
        "{help}"
    );
    let out = red5_rollout(dir.path(), &["plan", "--help"]);
    let help = stdout(&out);
    assert!(
        help.contains("Examples:\n  red5-rollout plan --fleet-state fleet.json"),
        "{help}"
    );
    let out = red5_rollout(dir.path(), &["validate", "--bogus"]);
    assert_eq!(out.status.code(), Some(2));
}

/// The binary with no AWS credentials anywhere: no keys, no profile files, no instance role.
fn without_credentials(dir: &Path, home: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_red5-rollout"));
    command
        .args(args)
        .current_dir(dir)
        .env_remove("RED5_ROLLOUT_REPO");
    for (key, _) in std::env::vars() {
        if key.starts_with("AWS_") {
            command.env_remove(key);
        }
    }
    command
        .env("HOME", home)
        .env("AWS_CONFIG_FILE", home.join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("no-credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", "us-east-1")
        .output()
        .expect("the binary runs")
}

#[test]
fn no_credentials_says_so_and_how_to_provide_them_never_to_run_again() {
    let repo = shipped_repo();
    let home = tempfile::tempdir().unwrap();
    let out = without_credentials(
        repo.path(),
        home.path(),
        &[
            "status",
            "stream-manager",
            "--endpoint-url",
            "http://127.0.0.1:9",
        ],
    );
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(
        text.starts_with("error: cannot read the fleet of pipeline stream-manager from AWS\n  caused by: DescribeAutoScalingGroups failed (no credentials): NoCredentials: "),
        "{text}"
    );
    assert!(
        text.contains("  hint: no AWS credentials were found: set AWS_PROFILE"),
        "{text}"
    );
    assert!(!text.contains("run again"), "{text}");
}

#[test]
fn an_unreachable_endpoint_says_so_and_names_where_to_look() {
    let repo = shipped_repo();
    let out = Command::new(env!("CARGO_BIN_EXE_red5-rollout"))
        .args(["status", "stream-manager"])
        .current_dir(repo.path())
        .env_remove("RED5_ROLLOUT_REPO")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        // Nothing listens on the discard port of loopback.
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .output()
        .expect("the binary runs");
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(
        text.contains(
            "DescribeAutoScalingGroups failed (endpoint unreachable): EndpointUnreachable: "
        ),
        "{text}"
    );
    assert!(
        text.contains("  hint: the AWS endpoint could not be reached: check the network, a proxy (HTTPS_PROXY), the region, and --endpoint-url / AWS_ENDPOINT_URL when one is set"),
        "{text}"
    );
}

#[test]
fn matrix_lists_the_pipelines_a_range_of_commits_changes_as_json() {
    let repo = shipped_repo();
    let dir = repo.path();
    let matrix = |args: &[&str]| {
        let mut all = vec!["matrix"];
        all.extend_from_slice(args);
        let out = red5_rollout(dir, &all);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let value: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        (value, stderr(&out))
    };
    // A new release that both pipelines track.
    std::fs::write(
        dir.join("releases/12.5.0.yaml"),
        crate::support::release_text("12.5.0"),
    )
    .unwrap();
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "release 12.5.0"]);
    let (value, said) = matrix(&[]);
    assert_eq!(
        value,
        serde_json::json!({"pipeline": ["stream-manager", "stream-manager-legacy"]})
    );
    assert!(
        said.contains("stream-manager: rollout (12.4.0 -> 12.5.0)"),
        "{said}"
    );
    // Editing one pipeline's launch block changes only that pipeline.
    let path = dir.join("pipelines/stream-manager-legacy.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("public_ip: true", "public_ip: false")).unwrap();
    git(dir, &["commit", "-qam", "no public IP"]);
    let (value, _) = matrix(&["--base", "HEAD^", "--head", "HEAD"]);
    assert_eq!(
        value,
        serde_json::json!({"pipeline": ["stream-manager-legacy"]})
    );
    // Nothing in pipelines/ or releases/: an empty matrix.
    std::fs::write(dir.join("NOTES.md"), "notes\n").unwrap();
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "notes"]);
    let (value, _) = matrix(&[]);
    assert_eq!(value, serde_json::json!({"pipeline": []}));
    // A base that cannot be read (a push that created the branch): every pipeline.
    let (value, said) = matrix(&["--base", "0000000000000000000000000000000000000000"]);
    assert_eq!(
        value,
        serde_json::json!({"pipeline": ["stream-manager", "stream-manager-legacy"]})
    );
    assert!(said.contains("every pipeline counts as changed"), "{said}");
}

#[test]
fn inside_github_actions_problems_are_also_annotations_on_their_lines() {
    let repo = shipped_repo();
    std::fs::write(
        repo.path().join("releases/12.5.0.yaml"),
        "version: 12.5.0\nartifact:\n  url: http://downloads.example.com/red5pro.zip\n",
    )
    .unwrap();
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "bad release"]);
    let out = Command::new(env!("CARGO_BIN_EXE_red5-rollout"))
        .arg("validate")
        .current_dir(repo.path())
        .env_remove("RED5_ROLLOUT_REPO")
        .env("GITHUB_ACTIONS", "true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let annotations: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    assert_eq!(
        annotations,
        vec![
            "::error file=releases/12.5.0.yaml,line=2,col=1,title=red5-rollout::artifact has no sha256%0Ahint: add `sha256:` with the artifact's SHA-256 (`sha256sum FILE`); the builder refuses to install an unverified artifact".to_string(),
            "::error file=releases/12.5.0.yaml,line=3,col=8,title=red5-rollout::artifact.url must use https:// or s3://, not http://%0Ahint: host the artifact on HTTPS or S3: a plain download can be altered in transit".to_string(),
        ]
    );
    // Outside Actions, no workflow commands.
    let plain = red5_rollout(repo.path(), &["validate"]);
    assert_eq!(stdout(&plain), "");
}

#[test]
fn gc_keeps_at_least_one_version_and_its_help_says_what_it_never_touches() {
    let dir = tempfile::tempdir().unwrap();
    let out = red5_rollout(dir.path(), &["gc", "--keep", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("keep at least 1 version: the one the group runs"),
        "{}",
        stderr(&out)
    );
    let help = stdout(&red5_rollout(dir.path(), &["gc", "--help"]));
    for taught in [
        "Untagged resources are never touched",
        "--dry-run prints the same list",
        "Examples:\n  red5-rollout gc --dry-run",
        "[default: 3]",
    ] {
        assert!(help.contains(taught), "{taught} missing from:\n{help}");
    }
}

/// `watch --output json` writes nothing but JSON lines on stderr, its errors too (as
/// `apply --output json` does), and `watch` takes apply's run flags.
#[test]
fn watch_with_json_output_reports_a_failed_fetch_as_a_json_error() {
    let dir = tempfile::tempdir().unwrap();
    let mirror = dir.path().join("mirror");
    let out = red5_rollout(
        dir.path(),
        &[
            "watch",
            "--once",
            "--output",
            "json",
            "--concurrency",
            "2",
            "--lease",
            "5m",
            "--remote",
            "/nonexistent/releases.git",
            "--mirror",
            mirror.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stderr(&out)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let error = lines
        .iter()
        .find(|l| l["event"] == "error")
        .unwrap_or_else(|| panic!("no error event in {lines:?}"));
    assert_eq!(
        error["message"],
        "cannot fetch branch main from /nonexistent/releases.git"
    );
    assert!(
        error["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("there is no repository at /nonexistent/releases.git"),
        "{error}"
    );
    assert_eq!(error["exit"], 7);
}
