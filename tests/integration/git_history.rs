//! The repository as git history: what a commit, a revert or an edit means for each
//! pipeline, read from real repositories made with the `git` command line.
//!
//! Every scenario starts from a temporary repository holding copies of the shipped
//! `pipelines/` and `releases/`, makes commits the way a release engineer would, and asks
//! `Repo` what a snapshot holds or which pipelines a range of commits changes.

use red5_rollout::repo::{ChangeKind, PipelineChange, Repo, RepoError};
use semver::Version;
use std::path::Path;
use std::process::Command;
use tempfile::TempDir;
use time::Date;
use time::macros::date;

const TODAY: Date = date!(2026 - 11 - 24);
const SM: &str = "pipelines/stream-manager.yaml";
const LEGACY: &str = "pipelines/stream-manager-legacy.yaml";

/// A throwaway repository and the `git` command line to change it.
struct GitRepo {
    dir: TempDir,
}

impl GitRepo {
    /// A repository whose first commit holds the shipped pipelines and the releases named.
    fn with_releases(versions: &[&str]) -> GitRepo {
        let repo = GitRepo {
            dir: TempDir::new().expect("a temporary directory"),
        };
        repo.git(&["init", "--quiet", "--initial-branch=main"]);
        for name in ["stream-manager.yaml", "stream-manager-legacy.yaml"] {
            repo.write(
                &format!("pipelines/{name}"),
                &shipped(&format!("pipelines/{name}")),
            );
        }
        for version in versions {
            repo.add_shipped_release(version);
        }
        repo.commit("the shipped pipelines and releases");
        repo
    }

    /// Runs git in the repository with a fixed identity and no user or system
    /// configuration, so that hooks, signing or templates of this machine play no part.
    fn git(&self, args: &[&str]) -> String {
        let output = Command::new("git")
            .current_dir(self.dir.path())
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .args([
                "-c",
                "user.name=Release Engineer",
                "-c",
                "user.email=release@example.com",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .output()
            .expect("git runs");
        assert!(
            output.status.success(),
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, file: &str, text: &str) {
        let path = self.path().join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.path().join(file)).unwrap()
    }

    /// Replaces the one occurrence of `old` in `file` with `new`, in the work tree.
    fn edit(&self, file: &str, old: &str, new: &str) {
        let text = self.read(file);
        assert_eq!(text.matches(old).count(), 1, "`{old}` once in {file}");
        self.write(file, &text.replacen(old, new, 1));
    }

    fn add_shipped_release(&self, version: &str) {
        let file = format!("releases/{version}.yaml");
        self.write(&file, &shipped(&file));
    }

    /// Commits everything in the work tree and returns the new commit's SHA.
    fn commit(&self, message: &str) -> String {
        self.git(&["add", "--all"]);
        self.git(&["commit", "--quiet", "-m", message]);
        self.head()
    }

    fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"])
    }

    fn open(&self) -> Repo {
        Repo::open(self.path()).expect("a git repository")
    }

    fn changes(&self, from: &str, to: &str) -> Vec<PipelineChange> {
        self.open()
            .changes(from, to, TODAY)
            .expect("both revisions exist")
    }
}

/// A file of the crate's own GitOps content.
fn shipped(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

fn version(text: &str) -> Option<Version> {
    Some(Version::parse(text).unwrap())
}

fn change(pipeline: &str, kind: ChangeKind, from: &str, to: &str) -> PipelineChange {
    let optional = |v: &str| if v.is_empty() { None } else { version(v) };
    PipelineChange {
        pipeline: pipeline.to_string(),
        kind,
        from: optional(from),
        to: optional(to),
    }
}

#[test]
fn a_new_release_rolls_out_every_pipeline_whose_track_it_matches() {
    let repo = GitRepo::with_releases(&["12.3.0", "12.5.0-rc.1"]);
    let before = repo.head();
    repo.add_shipped_release("12.4.0");
    let bump = repo.commit("release 12.4.0");

    assert_eq!(
        repo.changes(&before, &bump),
        [
            change(
                "stream-manager-legacy",
                ChangeKind::Rollout,
                "12.3.0",
                "12.4.0"
            ),
            change("stream-manager", ChangeKind::Rollout, "12.3.0", "12.4.0"),
        ]
    );
}

#[test]
fn reverting_a_bump_rolls_back_to_the_previous_release() {
    let repo = GitRepo::with_releases(&["12.3.0"]);
    let before = repo.head();
    repo.add_shipped_release("12.4.0");
    let bump = repo.commit("release 12.4.0");
    repo.git(&["revert", "--no-edit", &bump]);
    let revert = repo.head();

    assert_eq!(
        repo.changes(&bump, &revert),
        [
            change(
                "stream-manager-legacy",
                ChangeKind::Rollback,
                "12.4.0",
                "12.3.0"
            ),
            change("stream-manager", ChangeKind::Rollback, "12.4.0", "12.3.0"),
        ]
    );
    assert_eq!(repo.changes(&before, &revert), []);
}

#[test]
fn editing_a_pipeline_changes_only_that_pipeline_at_the_same_version() {
    let repo = GitRepo::with_releases(&["12.3.0", "12.4.0"]);
    repo.edit(SM, "  instance_warmup: 180s", "  instance_warmup: 300s");
    repo.commit("give stream managers five minutes to warm up");

    assert_eq!(
        repo.changes("HEAD~1", "HEAD"),
        [change(
            "stream-manager",
            ChangeKind::PipelineEdited,
            "12.4.0",
            "12.4.0"
        )]
    );
}

#[test]
fn a_commit_outside_pipelines_and_releases_changes_nothing() {
    let repo = GitRepo::with_releases(&["12.3.0", "12.4.0"]);
    repo.write("README.md", "# Stream Manager rollouts\n");
    repo.write("releases/NOTES.txt", "not a release file\n");
    repo.commit("describe the repository");

    assert_eq!(repo.changes("HEAD~1", "HEAD"), []);
}

#[test]
fn a_pin_holds_a_pipeline_back_and_raising_it_rolls_out() {
    let repo = GitRepo::with_releases(&["12.3.0", "12.4.0", "12.5.0-rc.1"]);
    repo.edit(SM, "track: \"^12\"", "pin: 12.3.0");
    repo.commit("hold stream-manager on 12.3.0");

    assert_eq!(
        repo.changes("HEAD~1", "HEAD"),
        [change(
            "stream-manager",
            ChangeKind::Rollback,
            "12.4.0",
            "12.3.0"
        )]
    );

    repo.edit(SM, "pin: 12.3.0", "pin: 12.5.0-rc.1");
    repo.commit("try the release candidate");

    assert_eq!(
        repo.changes("HEAD~1", "HEAD"),
        [change(
            "stream-manager",
            ChangeKind::Rollout,
            "12.3.0",
            "12.5.0-rc.1"
        )]
    );
}

#[test]
fn a_new_pipeline_file_is_added_and_a_deleted_one_removed() {
    let repo = GitRepo::with_releases(&["12.3.0", "12.4.0"]);
    let eu = shipped(SM)
        .replace("name: stream-manager\n", "name: stream-manager-eu\n")
        .replace("region: us-east-1", "region: eu-west-1");
    repo.write("pipelines/stream-manager-eu.yaml", &eu);
    repo.commit("roll the EU fleet too");

    assert_eq!(
        repo.changes("HEAD~1", "HEAD"),
        [change("stream-manager-eu", ChangeKind::Added, "", "12.4.0")]
    );

    repo.git(&["rm", "--quiet", LEGACY]);
    repo.commit("the legacy fleet is gone");

    assert_eq!(
        repo.changes("HEAD~1", "HEAD"),
        [change(
            "stream-manager-legacy",
            ChangeKind::Removed,
            "12.4.0",
            ""
        )]
    );
}

#[test]
fn a_snapshot_reads_files_as_committed_not_the_work_tree() {
    let repo = GitRepo::with_releases(&["12.3.0", "12.4.0"]);
    let head = repo.head();
    repo.write(SM, "this: [is not a pipeline\n");
    repo.write(
        "releases/12.6.0.yaml",
        &shipped("releases/12.4.0.yaml").replace("12.4.0", "12.6.0"),
    );
    repo.git(&["add", "releases/12.6.0.yaml"]);

    let snapshot = repo.open().snapshot("HEAD", TODAY).unwrap();

    assert_eq!(snapshot.commit, head);
    assert!(
        snapshot.catalog.problems.is_empty(),
        "{}",
        snapshot.catalog.problems
    );
    let names: Vec<&str> = snapshot
        .catalog
        .pipelines
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, ["stream-manager-legacy", "stream-manager"]);
    let versions: Vec<String> = snapshot
        .catalog
        .releases
        .iter()
        .map(|r| r.version.to_string())
        .collect();
    assert_eq!(versions, ["12.3.0", "12.4.0"]);
}

#[test]
fn an_invalid_release_is_a_problem_of_its_file_and_selects_nothing() {
    let repo = GitRepo::with_releases(&["12.3.0", "12.4.0"]);
    repo.write(
        "releases/12.6.0.yaml",
        &shipped("releases/12.4.0.yaml")
            .replace("12.4.0", "12.6.0")
            .replace("https://", "http://"),
    );
    repo.commit("release 12.6.0 over plain http");

    let snapshot = repo.open().snapshot("HEAD", TODAY).unwrap();

    let problems: Vec<String> = snapshot
        .catalog
        .problems
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        problems,
        [
            "releases/12.6.0.yaml:3:8: artifact.url must use https:// or s3://, not http://\n  \
          hint: host the artifact on HTTPS or S3: a plain download can be altered in transit"
        ]
    );
    assert_eq!(snapshot.catalog.releases.len(), 2);
    assert_eq!(repo.changes("HEAD~1", "HEAD"), []);
}

#[test]
fn an_unknown_revision_is_named_in_the_error() {
    let repo = GitRepo::with_releases(&["12.4.0"]);

    let err = repo.open().snapshot("release/12.9", TODAY).unwrap_err();

    assert!(matches!(err, RepoError::UnknownRevision { ref rev, .. } if rev == "release/12.9"));
    assert_eq!(
        err.to_string(),
        "revision `release/12.9` does not name a commit"
    );
    assert!(err.hint().contains("git fetch first"), "{}", err.hint());
    let err = repo.open().changes("HEAD", "HEAD~5", TODAY).unwrap_err();
    assert_eq!(err.to_string(), "revision `HEAD~5` does not name a commit");
}

#[test]
fn a_directory_outside_any_repository_is_refused() {
    let dir = TempDir::new().unwrap();

    let Err(err) = Repo::open(dir.path()) else {
        panic!("{} is not a repository", dir.path().display());
    };

    assert!(matches!(err, RepoError::NotARepository { .. }));
    assert_eq!(
        err.to_string(),
        format!("{} is not a git repository", dir.path().display())
    );
    assert!(err.hint().contains("--repo DIR"), "{}", err.hint());
}

/// The retry rule: a failed rollout is tried again only once a later commit changed its
/// pipeline's file or its release's file; an unrelated merge does not count.
#[test]
fn only_a_change_to_the_pipeline_or_the_release_counts_as_changed_since_a_failure() {
    let repo = GitRepo::with_releases(&["12.3.0", "12.4.0"]);
    let failed = repo.head();
    let files = ["pipelines/stream-manager.yaml", "releases/12.4.0.yaml"];

    repo.write("README.md", "# Stream Manager rollouts\n");
    repo.edit(
        "pipelines/stream-manager-legacy.yaml",
        "instance_warmup: 180s",
        "instance_warmup: 200s",
    );
    let unrelated = repo.commit("an unrelated merge");
    assert!(!repo.open().changed_since(&failed, &unrelated, &files));

    repo.edit(
        "releases/12.4.0.yaml",
        "notes:",
        "notes: rebuilt artifact.\n# was:",
    );
    let fixed = repo.commit("fix the 12.4.0 release");
    assert!(repo.open().changed_since(&failed, &fixed, &files));
    assert!(!repo.open().changed_since(&fixed, &fixed, &files));

    // A failed commit this repository does not have (rewritten history) counts as changed.
    assert!(
        repo.open()
            .changed_since("0000000000000000000000000000000000000001", &fixed, &files)
    );
}

#[test]
fn the_releases_selected_in_first_parent_history_are_listed_newest_first_until_enough() {
    let repo = GitRepo::with_releases(&["12.3.0"]);
    let first = repo.head();
    repo.add_shipped_release("12.4.0");
    let bump = repo.commit("release 12.4.0");
    repo.write("NOTES.md", "not a pipeline or a release\n");
    let notes = repo.commit("notes");
    repo.git(&["revert", "--no-edit", &bump]);
    let revert = repo.head();

    let selected = |distinct: usize| -> Vec<(String, String)> {
        let found = repo
            .open()
            .selections("HEAD", &["stream-manager".to_string()], distinct, TODAY)
            .expect("the history reads");
        found["stream-manager"]
            .iter()
            .map(|s| (s.commit.clone(), s.version.to_string()))
            .collect()
    };
    let pair = |commit: &str, version: &str| (commit.to_string(), version.to_string());
    // Two distinct versions are found by the second commit: the walk stops there.
    assert_eq!(
        selected(2),
        [pair(&revert, "12.3.0"), pair(&notes, "12.4.0")]
    );
    // Asked for more than history holds, it reads to the root.
    assert_eq!(
        selected(3),
        [
            pair(&revert, "12.3.0"),
            pair(&notes, "12.4.0"),
            pair(&bump, "12.4.0"),
            pair(&first, "12.3.0"),
        ]
    );
}
