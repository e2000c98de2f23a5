//! Reads the GitOps repository through git: pipelines and releases as committed at a
//! revision (never the working tree, so what runs is what was reviewed and merged), and
//! which pipelines a range of commits changes.
//!
//! The only module that imports `git2`.

use crate::model::{Catalog, Pipeline, Release, SourceFile, desired_release};
use git2::{ObjectType, Oid, Repository, Tree};
use semver::Version;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use time::Date;

pub const PIPELINES_DIR: &str = "pipelines";
pub const RELEASES_DIR: &str = "releases";

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("{path} is not a git repository")]
    NotARepository {
        path: PathBuf,
        #[source]
        source: git2::Error,
    },
    #[error("revision `{rev}` does not name a commit")]
    UnknownRevision {
        rev: String,
        #[source]
        source: git2::Error,
    },
    #[error("cannot read {what} at {commit}")]
    Read {
        what: String,
        commit: String,
        #[source]
        source: git2::Error,
    },
}

impl RepoError {
    pub fn hint(&self) -> &'static str {
        match self {
            RepoError::NotARepository { .. } => {
                "run from the GitOps repository's checkout, or pass --repo DIR"
            }
            RepoError::UnknownRevision { .. } => {
                "pass a commit, branch or tag that exists locally (git fetch first), e.g. --rev HEAD or --rev origin/main"
            }
            RepoError::Read { .. } => "the repository may be damaged: try `git fsck`",
        }
    }
}

/// The repository's content at one commit.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The full SHA of the commit.
    pub commit: String,
    pub catalog: Catalog,
    /// Blob ids of the pipeline files, to tell which changed between two commits.
    pipeline_blobs: Vec<(String, Oid)>,
}

/// How a pipeline changed between two commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    /// The desired version went up (a new release, or a raised pin).
    Rollout,
    /// The desired version went down, as after `git revert` of a bump.
    Rollback,
    /// The pipeline's own file changed, the desired version did not.
    PipelineEdited,
    /// The pipeline file is new.
    Added,
    /// The pipeline file was deleted: its fleet is left as it is.
    Removed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PipelineChange {
    pub pipeline: String,
    pub kind: ChangeKind,
    pub from: Option<Version>,
    pub to: Option<Version>,
}

pub struct Repo {
    inner: Repository,
}

impl Repo {
    /// Opens the repository containing `path` (a work tree or a bare repository).
    pub fn open(path: &Path) -> Result<Repo, RepoError> {
        Repository::discover(path)
            .map(|inner| Repo { inner })
            .map_err(|source| RepoError::NotARepository {
                path: path.to_path_buf(),
                source,
            })
    }

    /// The full SHA of the commit `rev` names.
    pub fn resolve(&self, rev: &str) -> Result<Oid, RepoError> {
        self.inner
            .revparse_single(rev)
            .and_then(|object| object.peel_to_commit())
            .map(|commit| commit.id())
            .map_err(|source| RepoError::UnknownRevision {
                rev: rev.to_string(),
                source,
            })
    }

    /// The pipelines and releases committed at `rev`, checked against each other.
    pub fn snapshot(&self, rev: &str, date: Date) -> Result<Snapshot, RepoError> {
        let oid = self.resolve(rev)?;
        let commit = oid.to_string();
        let read_err = |what: &str| {
            let commit = commit.clone();
            let what = what.to_string();
            move |source| RepoError::Read {
                what,
                commit,
                source,
            }
        };
        let tree = self
            .inner
            .find_commit(oid)
            .and_then(|c| c.tree())
            .map_err(read_err("the commit's tree"))?;
        let pipelines = self
            .yaml_files(&tree, PIPELINES_DIR)
            .map_err(read_err(PIPELINES_DIR))?;
        let releases = self
            .yaml_files(&tree, RELEASES_DIR)
            .map_err(read_err(RELEASES_DIR))?;
        let pipeline_blobs = pipelines
            .iter()
            .map(|(f, oid)| (f.path.clone(), *oid))
            .collect();
        let strip =
            |files: Vec<(SourceFile, Oid)>| files.into_iter().map(|(f, _)| f).collect::<Vec<_>>();
        let catalog = Catalog::check(&strip(pipelines), &strip(releases), date, &commit);
        Ok(Snapshot {
            commit,
            catalog,
            pipeline_blobs,
        })
    }

    /// The `.yaml` / `.yml` files directly under `dir` in `tree`, sorted by name.
    fn yaml_files(&self, tree: &Tree, dir: &str) -> Result<Vec<(SourceFile, Oid)>, git2::Error> {
        let entry = match tree.get_path(Path::new(dir)) {
            Ok(entry) => entry,
            Err(err) if err.code() == git2::ErrorCode::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(err),
        };
        let subtree = self.inner.find_tree(entry.id())?;
        let mut files = Vec::new();
        for item in subtree.iter() {
            let Ok(name) = item.name() else { continue };
            if item.kind() != Some(ObjectType::Blob)
                || !(name.ends_with(".yaml") || name.ends_with(".yml"))
            {
                continue;
            }
            let blob = self.inner.find_blob(item.id())?;
            files.push((
                SourceFile {
                    path: format!("{dir}/{name}"),
                    text: String::from_utf8_lossy(blob.content()).into_owned(),
                },
                item.id(),
            ));
        }
        files.sort_by(|a, b| a.0.path.cmp(&b.0.path));
        Ok(files)
    }

    /// Whether any of `paths` differs between commit `since` and `rev` (a file added,
    /// removed or changed). A `since` this repository does not have counts as changed: the
    /// history it belonged to is gone.
    pub fn changed_since(&self, since: &str, rev: &str, paths: &[&str]) -> bool {
        let tree_of = |rev: &str| -> Option<Tree<'_>> {
            let oid = self.resolve(rev).ok()?;
            self.inner.find_commit(oid).ok()?.tree().ok()
        };
        let (Some(before), Some(after)) = (tree_of(since), tree_of(rev)) else {
            return true;
        };
        let blob = |tree: &Tree, path: &str| tree.get_path(Path::new(path)).ok().map(|e| e.id());
        paths
            .iter()
            .any(|path| blob(&before, path) != blob(&after, path))
    }

    /// Which pipelines change between `from` and `to`: a pipeline changes when its own file
    /// changes or when the release it wants changes.
    pub fn changes(
        &self,
        from: &str,
        to: &str,
        date: Date,
    ) -> Result<Vec<PipelineChange>, RepoError> {
        let before = self.snapshot(from, date)?;
        let after = self.snapshot(to, date)?;
        Ok(compare(&before, &after))
    }
}

/// The trees of `pipelines/` and `releases/` at a commit (`None`: no such directory).
type DirTrees = (Option<Oid>, Option<Oid>);

/// How many commits of history [`Repo::selections`] reads at most: enough for years of
/// release bumps, bounded for a repository with a long unrelated history.
pub const HISTORY_LIMIT: usize = 1000;

impl Repo {
    /// The release each of `pipelines` selected at the commits of the first-parent history
    /// of `rev`, newest first (the commit `rev` names first): what a `git revert` of recent
    /// history rolls back to. Stops once every pipeline has `distinct` distinct versions,
    /// at the root, or after [`HISTORY_LIMIT`] commits. A commit where a pipeline selects
    /// nothing (it did not exist, or its release file did not) adds nothing for it. Commits
    /// that change neither `pipelines/` nor `releases/` are not read again.
    pub fn selections(
        &self,
        rev: &str,
        pipelines: &[String],
        distinct: usize,
        date: Date,
    ) -> Result<BTreeMap<String, Vec<crate::gc::Selection>>, RepoError> {
        let mut found: BTreeMap<String, Vec<crate::gc::Selection>> = pipelines
            .iter()
            .map(|name| (name.clone(), Vec::new()))
            .collect();
        let mut commit = Some(
            self.inner
                .find_commit(self.resolve(rev)?)
                .map_err(|source| RepoError::Read {
                    what: "the commit".into(),
                    commit: rev.into(),
                    source,
                })?,
        );
        // The trees of `pipelines/` and `releases/` last read, and what they selected.
        let mut last: Option<(DirTrees, Vec<(String, Version)>)> = None;
        for _ in 0..HISTORY_LIMIT {
            let Some(current) = commit.take() else { break };
            let sha = current.id().to_string();
            let read_err = |what: &str| {
                let (what, commit) = (what.to_string(), sha.clone());
                move |source| RepoError::Read {
                    what,
                    commit,
                    source,
                }
            };
            let tree = current.tree().map_err(read_err("the commit's tree"))?;
            let dir = |name: &str| tree.get_path(Path::new(name)).ok().map(|e| e.id());
            let key = (dir(PIPELINES_DIR), dir(RELEASES_DIR));
            let selected = match &last {
                Some((seen, selected)) if *seen == key => selected.clone(),
                _ => {
                    let pipeline_files = self
                        .yaml_files(&tree, PIPELINES_DIR)
                        .map_err(read_err(PIPELINES_DIR))?;
                    let release_files = self
                        .yaml_files(&tree, RELEASES_DIR)
                        .map_err(read_err(RELEASES_DIR))?;
                    let strip = |files: Vec<(SourceFile, Oid)>| {
                        files.into_iter().map(|(f, _)| f).collect::<Vec<_>>()
                    };
                    let catalog =
                        Catalog::check(&strip(pipeline_files), &strip(release_files), date, &sha);
                    pipelines
                        .iter()
                        .filter_map(|name| {
                            let pipeline = catalog.pipeline(name)?;
                            Some((name.clone(), desired(pipeline, &catalog.releases)?))
                        })
                        .collect()
                }
            };
            for (name, version) in &selected {
                if let Some(list) = found.get_mut(name) {
                    list.push(crate::gc::Selection {
                        commit: sha.clone(),
                        version: version.clone(),
                    });
                }
            }
            last = Some((key, selected));
            let enough = found.values().all(|list| {
                list.iter()
                    .map(|s| &s.version)
                    .collect::<std::collections::BTreeSet<_>>()
                    .len()
                    >= distinct
            });
            if enough {
                break;
            }
            commit = current.parent(0).ok();
        }
        Ok(found)
    }
}

fn desired(pipeline: &Pipeline, releases: &[Release]) -> Option<Version> {
    desired_release(pipeline, releases)
        .ok()
        .map(|r| r.version.clone())
}

/// The changes from `before` to `after`, by pipeline name.
pub fn compare(before: &Snapshot, after: &Snapshot) -> Vec<PipelineChange> {
    let blob = |snap: &Snapshot, name: &str| {
        snap.pipeline_blobs
            .iter()
            .find(|(path, _)| crate::model::Catalog::pipeline_file_name(path) == name)
            .map(|(_, oid)| *oid)
    };
    let mut changes = Vec::new();
    for new in &after.catalog.pipelines {
        let to = desired(new, &after.catalog.releases);
        match before.catalog.pipeline(&new.name) {
            None => changes.push(PipelineChange {
                pipeline: new.name.clone(),
                kind: ChangeKind::Added,
                from: None,
                to,
            }),
            Some(old) => {
                let from = desired(old, &before.catalog.releases);
                let kind = match (&from, &to) {
                    (Some(f), Some(t)) if t > f => Some(ChangeKind::Rollout),
                    (Some(f), Some(t)) if t < f => Some(ChangeKind::Rollback),
                    (None, Some(_)) => Some(ChangeKind::Rollout),
                    _ if blob(before, &new.name) != blob(after, &new.name) => {
                        Some(ChangeKind::PipelineEdited)
                    }
                    _ => None,
                };
                if let Some(kind) = kind {
                    changes.push(PipelineChange {
                        pipeline: new.name.clone(),
                        kind,
                        from,
                        to,
                    });
                }
            }
        }
    }
    for old in &before.catalog.pipelines {
        if after.catalog.pipeline(&old.name).is_none() && blob(after, &old.name).is_none() {
            changes.push(PipelineChange {
                pipeline: old.name.clone(),
                kind: ChangeKind::Removed,
                from: desired(old, &before.catalog.releases),
                to: None,
            });
        }
    }
    changes
}

/// Why the watched branch could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot keep a copy of the watched repository in {}", path.display())]
    Mirror {
        path: PathBuf,
        #[source]
        source: git2::Error,
    },
    #[error("cannot fetch branch {branch} from {remote}")]
    Fetch {
        remote: String,
        branch: String,
        #[source]
        source: git2::Error,
    },
}

impl FetchError {
    pub fn hint(&self) -> &'static str {
        match self {
            FetchError::Mirror { .. } => {
                "pass --mirror DIR, a directory the watcher may write to (it keeps a bare copy of the branch there)"
            }
            FetchError::Fetch { .. } => {
                "check --remote and --branch; for https set RED5_ROLLOUT_GIT_TOKEN (or GITHUB_TOKEN) to a token that can read the repository, for ssh load a key into ssh-agent (SSH_AUTH_SOCK)"
            }
        }
    }
}

/// Where the watched branch is kept in the mirror.
const WATCHED_REF: &str = "refs/red5-rollout/watched";

/// A bare copy of one branch of a remote repository, fetched with git2: what `watch` reads
/// its pipelines and releases from. The remote is a URL (https with a token from the
/// environment, ssh through the agent) or a local path.
pub struct Mirror {
    repo: Repo,
    dir: PathBuf,
    remote: String,
    branch: String,
}

impl Mirror {
    /// Opens the mirror in `dir`, creating it when there is none.
    pub fn open(dir: &Path, remote: &str, branch: &str) -> Result<Mirror, FetchError> {
        let mirror = |source| FetchError::Mirror {
            path: dir.to_path_buf(),
            source,
        };
        let inner = match Repository::open_bare(dir) {
            Ok(repo) => repo,
            Err(_) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| mirror(git2::Error::from_str(&e.to_string())))?;
                Repository::init_bare(dir).map_err(mirror)?
            }
        };
        Ok(Mirror {
            repo: Repo { inner },
            dir: dir.to_path_buf(),
            remote: remote.to_string(),
            branch: branch.to_string(),
        })
    }

    /// Fetches the branch; returns the full SHA of its head.
    pub fn fetch(&self) -> Result<String, FetchError> {
        let failed = |source| FetchError::Fetch {
            remote: self.remote.clone(),
            branch: self.branch.clone(),
            source,
        };
        // git2 says "unsupported URL protocol" for a local path that names nothing.
        if is_local_path(&self.remote) && !Path::new(&self.remote).exists() {
            return Err(failed(git2::Error::from_str(&format!(
                "there is no repository at {} (a local path; a URL starts with https:// or ssh://, or is user@host:path)",
                self.remote
            ))));
        }
        let mut remote = self
            .repo
            .inner
            .remote_anonymous(&self.remote)
            .map_err(failed)?;
        let mut callbacks = git2::RemoteCallbacks::new();
        callbacks.credentials(credentials);
        let mut options = git2::FetchOptions::new();
        options.remote_callbacks(callbacks);
        let tracking = format!("{WATCHED_REF}/{}", self.branch);
        let refspec = format!("+refs/heads/{}:{tracking}", self.branch);
        remote
            .fetch(&[&refspec], Some(&mut options), None)
            .map_err(failed)?;
        self.repo
            .inner
            .refname_to_id(&tracking)
            .map(|oid| oid.to_string())
            .map_err(failed)
    }

    /// The mirrored repository, to read snapshots from.
    pub fn repo(&self) -> &Repo {
        &self.repo
    }

    /// Where the mirror is.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Whether `remote` is a path on this machine rather than a URL (`scheme://…`) or an scp-like
/// ssh address (`user@host:path`, `host:path`).
fn is_local_path(remote: &str) -> bool {
    if remote.contains("://") {
        return false;
    }
    match remote.split_once(':') {
        // `host:path`, unless the colon comes after a slash (a path holding one).
        Some((host, _)) => host.contains('/') || host.is_empty(),
        None => true,
    }
}

/// Credentials for a fetch: an ssh key from the agent, or for https a token from
/// `RED5_ROLLOUT_GIT_TOKEN` (else `GITHUB_TOKEN`).
fn credentials(
    _url: &str,
    username: Option<&str>,
    allowed: git2::CredentialType,
) -> Result<git2::Cred, git2::Error> {
    if allowed.contains(git2::CredentialType::SSH_KEY) {
        return git2::Cred::ssh_key_from_agent(username.unwrap_or("git"));
    }
    if allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT) {
        let token = std::env::var("RED5_ROLLOUT_GIT_TOKEN")
            .or_else(|_| std::env::var("GITHUB_TOKEN"))
            .ok()
            .filter(|t| !t.is_empty());
        if let Some(token) = token {
            return git2::Cred::userpass_plaintext("x-access-token", &token);
        }
    }
    Err(git2::Error::from_str(
        "no credentials: set RED5_ROLLOUT_GIT_TOKEN for an https remote, or load a key into ssh-agent for an ssh remote",
    ))
}

#[cfg(test)]
mod tests {
    use super::{FetchError, Mirror, is_local_path};

    #[test]
    fn a_remote_is_a_local_path_unless_it_is_a_url_or_an_ssh_address() {
        for local in ["/srv/git/releases.git", "../releases", "releases", "./a:b"] {
            assert!(is_local_path(local), "{local}");
        }
        for remote in [
            "https://github.com/acme/releases.git",
            "ssh://git@github.com/acme/releases.git",
            "git@github.com:acme/releases.git",
            "file:///srv/git/releases.git",
        ] {
            assert!(!is_local_path(remote), "{remote}");
        }
    }

    /// A fetch that cannot happen says which remote and why, in the error's causes, with
    /// the hint on credentials; nothing is retried in a loop here (watch tries again at
    /// its next cycle).
    #[test]
    fn a_missing_or_unreachable_remote_fails_the_fetch_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                "/nonexistent/releases.git",
                "there is no repository at /nonexistent/releases.git",
            ),
            // Port 9 (discard) on the loopback: nothing listens, the connection is refused.
            ("https://127.0.0.1:9/acme/releases.git", "127.0.0.1"),
        ];
        for (n, (remote, cause)) in cases.into_iter().enumerate() {
            let mirror = Mirror::open(&dir.path().join(n.to_string()), remote, "main").unwrap();
            let error = mirror.fetch().unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("cannot fetch branch main from {remote}")
            );
            let source = std::error::Error::source(&error).unwrap().to_string();
            assert!(source.contains(cause), "{source}");
            assert!(matches!(error, FetchError::Fetch { .. }));
            assert!(error.hint().contains("RED5_ROLLOUT_GIT_TOKEN"));
        }
    }
}
