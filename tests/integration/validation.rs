//! Validation, as a release engineer meets it: one bad edit to a good pipeline or release
//! file, and the one diagnostic that says what is wrong, on the line to fix.
//!
//! Every case starts from a known-good document written out below, applies one edit (a
//! replaced, inserted or removed line; two for a rule that ties two sections together) and
//! asserts the exact message, its position and a
//! fragment of its hint. Checks that need the releases (selection, rendered name lengths)
//! run through `Catalog::check`; the one check that needs the fleet runs through the
//! planner. The shipped `pipelines/` and `releases/` are checked as they are on disk.

use red5_rollout::fleet::FleetState;
use red5_rollout::model::{
    Catalog, Diagnostic, Diagnostics, HeldInstances, Pipeline, Release, SourceFile,
    StandbyInstances, Target, desired_release, render,
};
use red5_rollout::plan::{PlanError, plan_rollout};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;
use time::Date;
use time::macros::date;

const PIPELINE_FILE: &str = "pipelines/stream-manager.yaml";
const RELEASE_FILE: &str = "releases/12.4.0.yaml";
const TODAY: Date = date!(2026 - 11 - 24);
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// A compact copy of `pipelines/stream-manager.yaml`. Every line an edit names is written
/// once, so that an edit finds exactly one place. Line numbers, for reading the tables:
///
/// ```text
///  1 name                 13 update:                  25 launch:
///  2 region               14   execution_timeout      26   kind
///  3 auto_scaling_group   15   script: |              27   template
///  4 track                16-20 (the script)          28   name
///  5 builder:             21 image:                   29   instance_type
///  6   base_image         22   name                   30   security_groups
///  7   instance_type      23   stop_before_imaging    31   public_ip
///  8   subnet             24   timeout                32   volume_size_gb
///  9   security_groups                                33   user_data: |
/// 10   instance_profile   36 refresh:                 34-35 (the user data)
/// 11   volume_size_gb     37   min_healthy_percentage
/// 12   ready_timeout      38   max_healthy_percentage 41 github:
///                         39   instance_warmup        42   report
///                         40   timeout
/// ```
const PIPELINE: &str = r#"name: stream-manager
region: us-east-1
auto_scaling_group: red5pro-sm-asg
track: "^12"
builder:
  base_image: from-group
  instance_type: c5.large
  subnet: red5pro-sm-subnet-a
  security_groups: [red5pro-sm-builder-sg]
  instance_profile: red5pro-sm-builder
  volume_size_gb: 16
  ready_timeout: 15m
update:
  execution_timeout: 30m
  script: |
    #!/bin/bash
    set -euo pipefail
    curl --fail -o /tmp/red5pro.zip {{ artifact_url | shell_quote }}
    echo {{ artifact_sha256 | shell_quote }}'  /tmp/red5pro.zip' | sha256sum --check
    echo {{ version | shell_quote }} > /usr/local/red5pro/.red5-rollout-version
image:
  name: "SM-red5pro-server-{{ version }}-{{ date }}-{{ instance_type_short }}"
  stop_before_imaging: true
  timeout: 45m
launch:
  kind: template
  template: red5pro-sm
  name: "SM-red5pro-server-{{ version }}-{{ date }}-{{ instance_type_short }}-template"
  instance_type: m5.large
  security_groups: [red5pro-sm-sg]
  public_ip: true
  volume_size_gb: 20
  user_data: |
    #!/bin/bash
    echo "streammanager.ip=$(hostname).example" >> /tmp/red5-web.properties
refresh:
  min_healthy_percentage: 100
  max_healthy_percentage: 200
  instance_warmup: 180s
  timeout: 2h
github:
  report: true
"#;

/// A compact copy of `releases/12.4.0.yaml`.
const RELEASE: &str = "\
version: 12.4.0
artifact:
  url: https://downloads.red5pro.example/releases/red5pro-server-12.4.0-release.zip
  sha256: eeb8905c43403419be585104171ce020a4a6abc288f86b2a8d05f79dd89a68b2
notes: Red5 Pro Server 12.4.0.
requires_database_migration: false
";

const RELEASE_12_3: &str = "\
version: 12.3.0
artifact:
  url: https://downloads.red5pro.example/releases/red5pro-server-12.3.0-release.zip
  sha256: 3abe8dabd653e4a9a2a0ca2c194121f0330c268c98e231906a8acf96792f4d21
";

const RELEASE_12_5_RC: &str = "\
version: 12.5.0-rc.1
artifact:
  url: s3://red5pro-releases-example/red5pro-server-12.5.0-rc.1-release.zip
  sha256: 7ef409f326e3a82b99537b5104fa409264fee2cab2c096683e09304f428769a8
";

/// One change to a good document.
#[derive(Debug, Clone)]
enum Edit {
    /// The document as written, whatever the good one says.
    Whole(&'static str),
    /// Replace the lines that read exactly `old`, written once, with `new`; either may
    /// span lines.
    Replace {
        old: &'static str,
        new: &'static str,
    },
    /// Insert `new` after the one line that reads exactly `after`.
    InsertAfter {
        after: &'static str,
        new: &'static str,
    },
    /// Delete the one line that reads exactly `old`.
    Remove { old: &'static str },
    /// Two edits, for a rule that ties fields of two sections together: the first, then
    /// the second on its result.
    Both(Box<Edit>, Box<Edit>),
}

impl Edit {
    fn apply(&self, good: &str) -> String {
        let (anchor, replacement) = match self {
            Edit::Whole(text) => return text.to_string(),
            Edit::Both(first, second) => return second.apply(&first.apply(good)),
            Edit::Replace { old, new } => (*old, Some(new.to_string())),
            Edit::InsertAfter { after, new } => (*after, Some(format!("{after}\n{new}"))),
            Edit::Remove { old } => (*old, None),
        };
        let lines: Vec<&str> = good.lines().collect();
        let anchor: Vec<&str> = anchor.lines().collect();
        let found: Vec<usize> = (0..=lines.len() - anchor.len())
            .filter(|i| lines[*i..*i + anchor.len()] == anchor[..])
            .collect();
        assert_eq!(
            found.len(),
            1,
            "the edit's anchor {anchor:?} must be written exactly once in the good document"
        );
        let mut out = String::new();
        for line in &lines[..found[0]] {
            writeln!(out, "{line}").unwrap();
        }
        if let Some(new) = replacement {
            writeln!(out, "{new}").unwrap();
        }
        for line in &lines[found[0] + anchor.len()..] {
            writeln!(out, "{line}").unwrap();
        }
        out
    }
}

/// What an edited document is checked as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subject {
    /// `Pipeline::from_yaml` on the edited pipeline.
    Pipeline,
    /// `Release::from_yaml` on the edited release.
    Release,
    /// `Catalog::check` of the edited pipeline with releases 12.3.0, 12.4.0 and 12.5.0-rc.1.
    PipelineWithReleases,
}

/// One bad input and the diagnostic it must produce.
#[derive(Debug, Clone)]
struct Case {
    name: &'static str,
    subject: Subject,
    file: &'static str,
    edit: Edit,
    message: &'static str,
    line: usize,
    column: Option<usize>,
    hint: Option<&'static str>,
}

impl Case {
    fn new(subject: Subject, file: &'static str, name: &'static str) -> Case {
        Case {
            name,
            subject,
            file,
            edit: Edit::Whole(""),
            message: "",
            line: 0,
            column: None,
            hint: None,
        }
    }

    fn pipeline(name: &'static str) -> Case {
        Case::new(Subject::Pipeline, PIPELINE_FILE, name)
    }

    fn release(name: &'static str) -> Case {
        Case::new(Subject::Release, RELEASE_FILE, name)
    }

    fn pipeline_with_releases(name: &'static str) -> Case {
        Case::new(Subject::PipelineWithReleases, PIPELINE_FILE, name)
    }

    fn in_file(mut self, file: &'static str) -> Case {
        self.file = file;
        self
    }

    fn written_as(mut self, text: &'static str) -> Case {
        self.edit = Edit::Whole(text);
        self
    }

    fn replacing(mut self, old: &'static str, new: &'static str) -> Case {
        self.edit = Edit::Replace { old, new };
        self
    }

    fn inserting_after(mut self, after: &'static str, new: &'static str) -> Case {
        self.edit = Edit::InsertAfter { after, new };
        self
    }

    fn removing(mut self, old: &'static str) -> Case {
        self.edit = Edit::Remove { old };
        self
    }

    /// A second edit, after the first: `new` inserted after the line `after`.
    fn and_inserting_after(mut self, after: &'static str, new: &'static str) -> Case {
        let first = std::mem::replace(&mut self.edit, Edit::Whole(""));
        self.edit = Edit::Both(Box::new(first), Box::new(Edit::InsertAfter { after, new }));
        self
    }

    fn says(mut self, message: &'static str) -> Case {
        self.message = message;
        self
    }

    /// On this line, at a column too dependent on the parser to pin down.
    fn on_line(mut self, line: usize) -> Case {
        self.line = line;
        self
    }

    fn at(mut self, line: usize, column: usize) -> Case {
        self.line = line;
        self.column = Some(column);
        self
    }

    /// The hint must contain `fragment`.
    fn hinting(mut self, fragment: &'static str) -> Case {
        self.hint = Some(fragment);
        self
    }

    fn text(&self) -> String {
        let good = match self.subject {
            Subject::Pipeline | Subject::PipelineWithReleases => PIPELINE,
            Subject::Release => RELEASE,
        };
        self.edit.apply(good)
    }

    fn diagnostics(&self) -> Diagnostics {
        let text = self.text();
        match self.subject {
            Subject::Pipeline => match Pipeline::from_yaml(self.file, &text) {
                Ok(_) => Diagnostics::default(),
                Err(problems) => problems,
            },
            Subject::Release => match Release::from_yaml(self.file, &text) {
                Ok(_) => Diagnostics::default(),
                Err(problems) => problems,
            },
            Subject::PipelineWithReleases => {
                let pipelines = [source(self.file, &text)];
                Catalog::check(&pipelines, &good_releases(), TODAY, COMMIT).problems
            }
        }
    }

    /// What is wrong with the diagnostics this case produced, if anything.
    fn mismatch(&self) -> Option<String> {
        let problems = self.diagnostics();
        let [found] = problems.0.as_slice() else {
            return Some(format!(
                "expected one diagnostic, found {}:\n{problems}",
                problems.len()
            ));
        };
        let mut wrong = Vec::new();
        if found.file != self.file {
            wrong.push(format!("file `{}`, expected `{}`", found.file, self.file));
        }
        if found.message != self.message {
            wrong.push(format!(
                "message\n      {:?}\n    expected\n      {:?}",
                found.message, self.message
            ));
        }
        if found.location.line != self.line {
            wrong.push(format!(
                "line {}, expected {}",
                found.location.line, self.line
            ));
        }
        if let Some(column) = self.column.filter(|c| *c != found.location.column) {
            wrong.push(format!(
                "column {}, expected {column}",
                found.location.column
            ));
        }
        if let Some(fragment) = self.hint
            && !found.hint.as_deref().unwrap_or_default().contains(fragment)
        {
            wrong.push(format!(
                "hint {:?} does not contain {fragment:?}",
                found.hint
            ));
        }
        (!wrong.is_empty()).then(|| format!("{}\n  got: {found}", wrong.join("\n  ")))
    }
}

fn source(path: &str, text: &str) -> SourceFile {
    SourceFile {
        path: path.to_string(),
        text: text.to_string(),
    }
}

fn good_releases() -> Vec<SourceFile> {
    vec![
        source("releases/12.3.0.yaml", RELEASE_12_3),
        source("releases/12.4.0.yaml", RELEASE),
        source("releases/12.5.0-rc.1.yaml", RELEASE_12_5_RC),
    ]
}

/// Runs every case and fails once, listing every case that went wrong with the text it
/// checked, so that one run shows the whole table's state.
fn assert_cases(cases: &[Case]) {
    let mut report = String::new();
    for case in cases {
        if let Some(mismatch) = case.mismatch() {
            let numbered: String = case
                .text()
                .lines()
                .enumerate()
                .map(|(i, line)| format!("  {:>3} | {line}\n", i + 1))
                .collect();
            writeln!(
                report,
                "\n== {} ({})\n  {mismatch}\n{numbered}",
                case.name, case.file
            )
            .unwrap();
        }
    }
    assert!(report.is_empty(), "{report}");
}

/// Asserts that the pipeline each edit makes is valid: the other side of a table.
fn assert_valid(edits: &[Edit]) {
    let mut report = String::new();
    for edit in edits {
        if let Err(problems) = Pipeline::from_yaml(PIPELINE_FILE, &edit.apply(PIPELINE)) {
            writeln!(report, "\n== {edit:?}\n{problems}").unwrap();
        }
    }
    assert!(report.is_empty(), "{report}");
}

#[test]
fn the_good_documents_the_tables_start_from_are_valid() {
    let line = |n: usize| PIPELINE.lines().nth(n - 1).unwrap();
    let numbered = [
        (4, "track:"),
        (15, "  script: |"),
        (22, "  name: "),
        (28, "  name: "),
        (33, "  user_data: |"),
        (38, "  max_healthy_percentage:"),
        (42, "  report:"),
    ];
    for (n, start) in numbered {
        assert!(line(n).starts_with(start), "line {n} is `{}`", line(n));
    }
    let pipeline = Pipeline::from_yaml(PIPELINE_FILE, PIPELINE).expect("the good pipeline");
    assert_eq!(pipeline.name, "stream-manager");
    Release::from_yaml(RELEASE_FILE, RELEASE).expect("the good release");
    let catalog = Catalog::check(
        &[source(PIPELINE_FILE, PIPELINE)],
        &good_releases(),
        TODAY,
        COMMIT,
    );
    assert_eq!(catalog.problems, Diagnostics::default());
    assert_eq!(catalog.releases.len(), 3);
}

#[test]
fn yaml_that_does_not_parse_or_fit_the_format_is_reported_where_it_goes_wrong() {
    assert_cases(&[
        Case::pipeline("an empty file")
            .written_as("")
            .says("the file is empty")
            .at(1, 1)
            .hinting("write the document, or delete the file"),
        Case::pipeline("a file of comments only")
            .written_as("# nothing here yet\n\n")
            .says("the file holds only comments")
            .at(1, 1)
            .hinting("write the document"),
        Case::release("an empty release")
            .written_as("   \n")
            .says("the file is empty")
            .at(1, 1),
        Case::pipeline("a key indented deeper than its siblings")
            .replacing("  subnet: red5pro-sm-subnet-a", "    subnet: red5pro-sm-subnet-a")
            .says("mapping values are not allowed in this context")
            .at(8, 11)
            .hinting("check the indentation"),
        Case::pipeline("a key indented less than its siblings")
            .replacing("  subnet: red5pro-sm-subnet-a", " subnet: red5pro-sm-subnet-a")
            .says("did not find expected key, while parsing a block mapping")
            .at(8, 2)
            .hinting("check the indentation"),
        Case::pipeline("an unclosed quote that a later quote seems to close")
            .replacing("track: \"^12\"", "track: \"^12")
            .says("the value of `track` opens a quote that is not closed on its line")
            .at(4, 8)
            .hinting("end the value with the quote it starts with"),
        Case::pipeline("an unclosed quote that runs to the end of the file")
            .replacing("  timeout: 2h", "  timeout: '2h")
            .says("the value of `refresh.timeout` opens a quote that is not closed on its line")
            .at(40, 12),
        Case::pipeline("an unclosed list")
            .replacing(
                "  security_groups: [red5pro-sm-sg]",
                "  security_groups: [red5pro-sm-sg",
            )
            .says("did not find expected ',' or ']', while parsing a flow sequence")
            .at(30, 20)
            .hinting("close the list with `]`"),
        Case::pipeline("an unknown top-level field")
            .replacing("track: \"^12\"", "trak: \"^12\"")
            .says("unknown field `trak`, expected one of `name`, `region`, `auto_scaling_group`, `track`, `pin`, `builder`, `update`, `image`, `launch`, `refresh`, `github`")
            .at(4, 1)
            .hinting("did you mean `track`?"),
        Case::pipeline("an unknown nested field")
            .replacing("  instance_warmup: 180s", "  instance_warmpu: 180s")
            .says("refresh: unknown field `instance_warmpu`, expected one of `min_healthy_percentage`, `max_healthy_percentage`, `instance_warmup`, `checkpoints`, `checkpoint_delay`, `skip_matching`, `scale_in_protected_instances`, `standby_instances`, `timeout`")
            .at(39, 3)
            .hinting("did you mean `instance_warmup`?"),
        Case::pipeline("an unknown field nothing like a known one")
            .inserting_after("  public_ip: true", "  spot_price: 0.05")
            .says("launch: unknown field `spot_price`, expected one of `kind`, `template`, `name`, `instance_type`, `security_groups`, `key_pair`, `public_ip`, `volume_size_gb`, `user_data`")
            .at(32, 3)
            .hinting("remove `spot_price`"),
        Case::release("an unknown field in a release")
            .replacing(
                "  sha256: eeb8905c43403419be585104171ce020a4a6abc288f86b2a8d05f79dd89a68b2",
                "  sha265: eeb8905c43403419be585104171ce020a4a6abc288f86b2a8d05f79dd89a68b2",
            )
            .says("artifact: unknown field `sha265`, expected `url` or `sha256`")
            .at(4, 3)
            .hinting("did you mean `sha256`?"),
        Case::pipeline("a duplicate key")
            .inserting_after("region: us-east-1", "region: us-west-2")
            .says("duplicate entry with key \"region\"")
            .at(3, 1)
            .hinting("a key may appear once per mapping"),
        Case::pipeline("a duplicate nested key")
            .inserting_after("  subnet: red5pro-sm-subnet-a", "  subnet: red5pro-sm-subnet-b")
            .says("builder: duplicate entry with key \"subnet\"")
            .at(9, 3),
        Case::pipeline("a string where a number goes")
            .replacing("  min_healthy_percentage: 100", "  min_healthy_percentage: ninety")
            .says("refresh.min_healthy_percentage: invalid type: string \"ninety\", expected i64")
            .at(37, 27)
            .hinting("check the value's type"),
        Case::pipeline("a list where a string goes")
            .replacing("region: us-east-1", "region: [us-east-1]")
            .says("region: invalid type: sequence, expected a string")
            .at(2, 9)
            .hinting("check the value's type"),
        Case::pipeline("a missing required field")
            .removing("auto_scaling_group: red5pro-sm-asg")
            .says("missing field `auto_scaling_group`")
            .at(1, 1)
            .hinting("add the field"),
        Case::pipeline("a missing nested field")
            .removing("  subnet: red5pro-sm-subnet-a")
            .says("builder: missing field `subnet`")
            .at(5, 1)
            .hinting("add the field"),
        Case::pipeline("a pipeline that bakes, without its update block")
            .removing(
                "update:\n  execution_timeout: 30m\n  script: |\n    #!/bin/bash\n    set -euo pipefail\n    curl --fail -o /tmp/red5pro.zip {{ artifact_url | shell_quote }}\n    echo {{ artifact_sha256 | shell_quote }}'  /tmp/red5pro.zip' | sha256sum --check\n    echo {{ version | shell_quote }} > /usr/local/red5pro/.red5-rollout-version",
            )
            .says("missing field `update`: a pipeline bakes its images with a builder and an update script")
            .at(1, 1)
            .hinting("or set image.from_pipeline to roll out another pipeline's images"),
        Case::pipeline("a promoted pipeline with a builder it never runs")
            .inserting_after("image:", "  from_pipeline: stream-manager-staging")
            .says("builder and update are not used: a pipeline with image.from_pipeline never bakes, it rolls out the images of the pipeline it names")
            .at(5, 1)
            .hinting("remove the builder and update blocks"),
        Case::pipeline("an unknown launch kind")
            .replacing("  kind: template", "  kind: lc")
            .says("launch.kind: unknown variant `lc`, expected `template` or `configuration`")
            .at(26, 9)
            .hinting("write one of the values listed above instead of `lc`"),
    ]);
}

#[test]
fn release_files_are_checked_before_their_values_reach_a_shell() {
    assert_cases(&[
        Case::release("a version without a patch number")
            .replacing("version: 12.4.0", "version: 12.4")
            .says("version `12.4` is not semver (unexpected end of input while parsing minor version number)")
            .at(1, 10)
            .hinting("a version is MAJOR.MINOR.PATCH"),
        Case::release("a version with a leading v")
            .replacing("version: 12.4.0", "version: v12.4.0")
            .says("version `v12.4.0` is not semver")
            .at(1, 10)
            .hinting("write `12.4.0` without the leading `v`"),
        Case::release("a version with four numbers")
            .replacing("version: 12.4.0", "version: 12.4.0.1")
            .says("version `12.4.0.1` is not semver (unexpected character '.' after patch version number)")
            .at(1, 10),
        Case::release("a version that does not match its file name")
            .replacing("version: 12.4.0", "version: 12.4.1")
            .says("version 12.4.1 does not match the file name `12.4.0`")
            .at(1, 10)
            .hinting("name the file releases/12.4.1.yaml, or fix the version"),
        Case::release("a version that chains a shell command")
            .replacing("version: 12.4.0", "version: 12.4.0;rm -rf /")
            .says("version `12.4.0;rm -rf /` is not semver (unexpected character ';' after patch version number)")
            .at(1, 10),
        Case::release("a version that substitutes a shell command")
            .replacing("version: 12.4.0", "version: $(id)")
            .says("version `$(id)` is not semver (unexpected character '$' while parsing major version number)")
            .at(1, 10),
        Case::release("a plain http artifact")
            .replacing(
                "  url: https://downloads.red5pro.example/releases/red5pro-server-12.4.0-release.zip",
                "  url: http://downloads.red5pro.example/releases/red5pro-server-12.4.0-release.zip",
            )
            .says("artifact.url must use https:// or s3://, not http://")
            .at(3, 8)
            .hinting("a plain download can be altered in transit"),
        Case::release("an ftp artifact")
            .replacing(
                "  url: https://downloads.red5pro.example/releases/red5pro-server-12.4.0-release.zip",
                "  url: ftp://downloads.red5pro.example/red5pro-server-12.4.0-release.zip",
            )
            .says("artifact.url must use https:// or s3://, not ftp://")
            .at(3, 8),
        Case::release("an artifact path with no scheme")
            .replacing(
                "  url: https://downloads.red5pro.example/releases/red5pro-server-12.4.0-release.zip",
                "  url: downloads.red5pro.example/red5pro-server-12.4.0-release.zip",
            )
            .says("artifact.url `downloads.red5pro.example/red5pro-server-12.4.0-release.zip` is not an https:// or s3:// URL")
            .at(3, 8),
        Case::release("an artifact url with a space")
            .replacing(
                "  url: https://downloads.red5pro.example/releases/red5pro-server-12.4.0-release.zip",
                "  url: https://downloads.red5pro.example/releases/red5pro server 12.4.0.zip",
            )
            .says("artifact.url contains ' ', which a URL may not hold unescaped")
            .at(3, 58)
            .hinting("percent-encode it as %20"),
        Case::release("an artifact url that substitutes a command")
            .replacing(
                "  url: https://downloads.red5pro.example/releases/red5pro-server-12.4.0-release.zip",
                "  url: https://downloads.red5pro.example/releases/red5pro-$(id).zip",
            )
            .says("artifact.url contains '$', which a shell would read as syntax")
            .at(3, 59)
            .hinting("percent-encode it as %24; the URL reaches a shell on the builder"),
        Case::release("an artifact url that chains a command")
            .replacing(
                "  url: https://downloads.red5pro.example/releases/red5pro-server-12.4.0-release.zip",
                "  url: https://downloads.red5pro.example/releases/red5pro-server-12.4.0-release.zip;reboot",
            )
            .says("artifact.url contains ';', which a shell would read as syntax")
            .at(3, 84)
            .hinting("%3B"),
        Case::release("an artifact url with backticks, quoted in the file")
            .replacing(
                "  url: https://downloads.red5pro.example/releases/red5pro-server-12.4.0-release.zip",
                "  url: \"https://downloads.red5pro.example/releases/red5pro-server-12.4.0-release`id`.zip\"",
            )
            .says("artifact.url contains '`', which a shell would read as syntax")
            .at(3, 81)
            .hinting("%60"),
        Case::release("an artifact url with braces")
            .replacing(
                "  url: https://downloads.red5pro.example/releases/red5pro-server-12.4.0-release.zip",
                "  url: https://downloads.red5pro.example/releases/red5pro-server-{12.4.0}-release.zip",
            )
            .says("artifact.url contains '{', which a shell would read as syntax")
            .at(3, 66)
            .hinting("%7B"),
        Case::release("a presigned artifact url")
            .replacing(
                "  url: https://downloads.red5pro.example/releases/red5pro-server-12.4.0-release.zip",
                "  url: https://red5pro-releases.s3.amazonaws.com/red5pro-server-12.4.0-release.zip?X-Amz-Signature=0f3c",
            )
            .says("artifact.url contains '?', which a shell would read as syntax")
            .at(3, 83)
            .hinting("a URL with a query string (a presigned URL) cannot be used: give the builder's instance profile read access and write the artifact as s3://bucket/key"),
        Case::release("an artifact url with a tab written as an escape")
            .replacing(
                "  url: https://downloads.red5pro.example/releases/red5pro-server-12.4.0-release.zip",
                "  url: \"https://downloads.red5pro.example/releases/red5pro\\tserver.zip\"",
            )
            .says("artifact.url contains '\\t', which a URL may not hold unescaped")
            .at(3, 8)
            .hinting("percent-encode it as %09"),
        Case::release("an artifact url with no host")
            .replacing(
                "  url: https://downloads.red5pro.example/releases/red5pro-server-12.4.0-release.zip",
                "  url: https:///red5pro-server-12.4.0-release.zip",
            )
            .says("artifact.url `https:///red5pro-server-12.4.0-release.zip` has no host or bucket")
            .at(3, 8),
        Case::release("an artifact without a checksum")
            .removing("  sha256: eeb8905c43403419be585104171ce020a4a6abc288f86b2a8d05f79dd89a68b2")
            .says("artifact has no sha256")
            .at(2, 1)
            .hinting("sha256sum FILE"),
        Case::release("a checksum cut short")
            .replacing(
                "  sha256: eeb8905c43403419be585104171ce020a4a6abc288f86b2a8d05f79dd89a68b2",
                "  sha256: eeb8905c43403419be585104171ce020",
            )
            .says("artifact.sha256 must be 64 hex digits, found 32 characters")
            .at(4, 11)
            .hinting("the full output of `sha256sum FILE`"),
        Case::release("a checksum with a letter that is not hex")
            .replacing(
                "  sha256: eeb8905c43403419be585104171ce020a4a6abc288f86b2a8d05f79dd89a68b2",
                "  sha256: eeb8905c43403419be585104171ce020a4a6abc288f86b2a8d05f79dd89a68bg",
            )
            .says("artifact.sha256 must be 64 hex digits, found 'g', which is not a hex digit")
            .at(4, 11),
    ]);
}

#[test]
fn artifact_urls_a_shell_reads_literally_are_accepted() {
    for url in [
        "https://downloads.red5pro.example:8443/releases/red5pro%20server+12.4.0=final,~1@x.zip",
        "s3://red5pro-releases-example/releases/12.4.0/red5pro-server-12.4.0-release.zip",
    ] {
        let text = RELEASE.replace(
            "https://downloads.red5pro.example/releases/red5pro-server-12.4.0-release.zip",
            url,
        );
        let release = Release::from_yaml(RELEASE_FILE, &text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(release.artifact.url, url);
    }
}

#[test]
fn templates_may_only_use_known_variables_and_must_parse() {
    assert_cases(&[
        Case::pipeline("an unknown variable in the update script")
            .replacing(
                "    echo {{ version | shell_quote }} > /usr/local/red5pro/.red5-rollout-version",
                "    echo {{ verison | shell_quote }} > /usr/local/red5pro/.red5-rollout-version",
            )
            .says("update.script: template uses unknown variable `verison`")
            .on_line(20)
            .hinting("use one of: version, artifact_url"),
        Case::pipeline("an unknown variable whose name appears earlier in the script")
            .replacing(
                "    echo {{ version | shell_quote }} > /usr/local/red5pro/.red5-rollout-version",
                "    rm -f {{ tmp }}/red5pro.zip",
            )
            .says("update.script: template uses unknown variable `tmp`")
            .on_line(20),
        Case::pipeline("an unknown variable in the image name")
            .replacing(
                "  name: \"SM-red5pro-server-{{ version }}-{{ date }}-{{ instance_type_short }}\"",
                "  name: \"SM-red5pro-server-{{ release }}-{{ date }}\"",
            )
            .says("image.name: template uses unknown variable `release`")
            .at(22, 9),
        Case::pipeline("an unknown variable in the user data")
            .replacing(
                "    echo \"streammanager.ip=$(hostname).example\" >> /tmp/red5-web.properties",
                "    echo \"streammanager.ip={{ hostname }}\" >> /tmp/red5-web.properties",
            )
            .says("launch.user_data: template uses unknown variable `hostname`")
            .on_line(35),
        Case::pipeline("a template that does not parse")
            .replacing(
                "    curl --fail -o /tmp/red5pro.zip {{ artifact_url | shell_quote }}",
                "    curl --fail -o /tmp/red5pro.zip {{ artifact_url | shell_quote }",
            )
            .says("update.script: template does not parse: unexpected `}`, expected end of variable block")
            .on_line(18)
            .hinting("minijinja"),
    ]);
}

#[test]
fn a_pipeline_follows_a_track_or_holds_a_pin() {
    assert_cases(&[
        Case::pipeline("a track that is not a semver requirement")
            .replacing("track: \"^12\"", "track: twelve")
            .says("track `twelve` is not a semver requirement (unexpected character 't' while parsing major version number)")
            .at(4, 8)
            .hinting("\"^12\""),
        Case::pipeline("both a track and a pin")
            .inserting_after("track: \"^12\"", "pin: 12.4.0")
            .says("a pipeline has either `track` or `pin`, not both")
            .at(5, 6),
        Case::pipeline("neither a track nor a pin")
            .removing("track: \"^12\"")
            .says("the pipeline has neither `track` nor `pin`")
            .at(1, 7)
            .hinting("track: \"^12\""),
        Case::pipeline("a pin that is not semver")
            .replacing("track: \"^12\"", "pin: 12.4")
            .says("pin: version `12.4` is not semver (unexpected end of input while parsing minor version number)")
            .at(4, 6),
        Case::pipeline("a pin with a leading v")
            .replacing("track: \"^12\"", "pin: v12.4.0")
            .says("pin: version `v12.4.0` is not semver")
            .at(4, 6)
            .hinting("write `12.4.0` without the leading `v`"),
    ]);
}

#[test]
fn refresh_percentages_must_be_ones_aws_accepts() {
    assert_cases(&[
        Case::pipeline("min healthy above 100")
            .replacing("  min_healthy_percentage: 100", "  min_healthy_percentage: 101")
            .says("refresh.min_healthy_percentage is 101; it must be between 0 and 100")
            .at(37, 27),
        Case::pipeline("min healthy below 0")
            .replacing("  min_healthy_percentage: 100", "  min_healthy_percentage: -1")
            .says("refresh.min_healthy_percentage is -1; it must be between 0 and 100")
            .at(37, 27),
        Case::pipeline("max healthy below 100")
            .replacing("  max_healthy_percentage: 200", "  max_healthy_percentage: 99")
            .says("refresh.max_healthy_percentage is 99; it must be between 100 and 200")
            .at(38, 27),
        Case::pipeline("max healthy above 200")
            .replacing("  max_healthy_percentage: 200", "  max_healthy_percentage: 201")
            .says("refresh.max_healthy_percentage is 201; it must be between 100 and 200")
            .at(38, 27),
        Case::pipeline("max healthy more than 100 above min healthy")
            .replacing("  min_healthy_percentage: 100", "  min_healthy_percentage: 50")
            .says("refresh.max_healthy_percentage (200) is more than 100 above min_healthy_percentage (50)")
            .at(38, 27)
            .hinting("raise min_healthy_percentage to at least 100"),
        Case::pipeline("checkpoints out of order")
            .inserting_after("  instance_warmup: 180s", "  checkpoints: [50, 20, 100]")
            .says("refresh.checkpoints must be ascending percentages between 1 and 100")
            .at(40, 16),
        Case::pipeline("a checkpoint past 100")
            .inserting_after("  instance_warmup: 180s", "  checkpoints: [50, 150]")
            .says("refresh.checkpoints must be ascending percentages between 1 and 100")
            .at(40, 16),
    ]);
}

#[test]
fn refresh_preferences_are_spelled_as_aws_spells_them() {
    assert_cases(&[
        Case::pipeline("a scale-in protection preference in lowercase")
            .inserting_after("  instance_warmup: 180s", "  scale_in_protected_instances: wait")
            .says("refresh.scale_in_protected_instances: unknown variant `wait`, expected one of `Refresh`, `Ignore`, `Wait`")
            .at(40, 33)
            .hinting("did you mean `Wait`?"),
        Case::pipeline("a standby preference AWS does not have")
            .inserting_after("  instance_warmup: 180s", "  standby_instances: Replace")
            .says("refresh.standby_instances: unknown variant `Replace`, expected one of `Terminate`, `Ignore`, `Wait`")
            .at(40, 22)
            .hinting("write one of the values listed above instead of `Replace`"),
        Case::pipeline("Refresh for standby instances, which only protected instances take")
            .inserting_after("  instance_warmup: 180s", "  standby_instances: Refresh")
            .says("refresh.standby_instances: unknown variant `Refresh`, expected one of `Terminate`, `Ignore`, `Wait`")
            .at(40, 22)
            .hinting("write one of the values listed above instead of `Refresh`"),
    ]);
}

#[test]
fn refresh_preferences_default_as_aws_does_and_are_read_as_written() {
    let good = Pipeline::from_yaml(PIPELINE_FILE, PIPELINE)
        .unwrap()
        .refresh;
    assert_eq!(good.scale_in_protected_instances, HeldInstances::Wait);
    assert_eq!(good.standby_instances, StandbyInstances::Wait);
    assert_eq!(good.checkpoint_delay, Duration::from_secs(3600));
    assert_eq!(good.checkpoint_pauses(), Duration::ZERO);

    let text = Edit::InsertAfter {
        after: "  instance_warmup: 180s",
        new: "  checkpoints: [50, 100]\n  checkpoint_delay: 20m\n  scale_in_protected_instances: Refresh\n  standby_instances: Ignore",
    }
    .apply(PIPELINE);
    let written = Pipeline::from_yaml(PIPELINE_FILE, &text).unwrap().refresh;
    assert_eq!(written.checkpoints, [50, 100]);
    assert_eq!(written.checkpoint_delay, Duration::from_secs(20 * 60));
    assert_eq!(written.checkpoint_pauses(), Duration::from_secs(20 * 60));
    assert_eq!(written.scale_in_protected_instances, HeldInstances::Refresh);
    assert_eq!(written.scale_in_protected_instances.as_aws(), "Refresh");
    assert_eq!(written.standby_instances.as_aws(), "Ignore");
    assert_eq!(HeldInstances::Wait.as_aws(), "Wait");
}

/// AWS pauses at every checkpoint below 100 for `checkpoint_delay`, replaces only up to
/// the last checkpoint, and refuses a delay without checkpoints.
#[test]
fn checkpoints_end_at_100_and_their_pauses_fit_the_timeout() {
    assert_cases(&[
        Case::pipeline("checkpoints that stop short of 100")
            .inserting_after("  instance_warmup: 180s", "  checkpoints: [25, 50]")
            .says("refresh.checkpoints ends at 50; the last checkpoint must be 100")
            .at(40, 16)
            .hinting("end the list with 100, e.g. [50, 100]"),
        Case::pipeline("a checkpoint delay that is not a duration")
            .inserting_after("  instance_warmup: 180s", "  checkpoint_delay: an hour")
            .says("refresh.checkpoint_delay: `an hour` is not a duration")
            .at(40, 21)
            .hinting("90s, 20m, 1h30m"),
        Case::pipeline("a checkpoint delay over 48 hours")
            .inserting_after(
                "  instance_warmup: 180s",
                "  checkpoints: [50, 100]\n  checkpoint_delay: 49h",
            )
            .says("refresh.checkpoint_delay is 49h; it must be between 0s and 48h")
            .at(41, 21)
            .hinting("AWS accepts 0 to 172800 seconds"),
        Case::pipeline("a checkpoint delay without checkpoints")
            .inserting_after("  instance_warmup: 180s", "  checkpoint_delay: 10m")
            .says("refresh.checkpoint_delay is set but refresh.checkpoints is not")
            .at(40, 21)
            .hinting("add `checkpoints: [50, 100]`, or remove checkpoint_delay"),
        Case::pipeline("checkpoints whose default one-hour pauses fill the timeout")
            .inserting_after("  instance_warmup: 180s", "  checkpoints: [25, 50, 100]")
            .says("refresh.timeout is 2h, and the checkpoints alone pause 2h (2 × checkpoint_delay 1h)")
            .at(41, 12)
            .hinting("raise refresh.timeout above 2h plus the time the replacements take, or lower refresh.checkpoint_delay"),
        Case::pipeline("a checkpoint delay whose pauses outlast the default timeout")
            .replacing(
                "  timeout: 2h",
                "  checkpoints: [20, 40, 60, 80, 100]\n  checkpoint_delay: 40m",
            )
            .says("refresh.timeout is 2h, and the checkpoints alone pause 2h40m (4 × checkpoint_delay 40m)")
            .at(41, 21)
            .hinting("raise refresh.timeout above 2h40m"),
        Case::pipeline("checkpoints alone, with AWS's delay and the default timeout")
            .replacing("  timeout: 2h", "  checkpoints: [10, 20, 100]")
            .says("refresh.timeout is 2h, and the checkpoints alone pause 2h (2 × checkpoint_delay 1h)")
            .at(40, 16),
    ]);
}

#[test]
fn checkpoints_whose_pauses_leave_time_to_replace_are_accepted() {
    assert_valid(&[
        Edit::InsertAfter {
            after: "  instance_warmup: 180s",
            new: "  checkpoints: [50, 100]",
        },
        Edit::Replace {
            old: "  timeout: 2h",
            new: "  checkpoints: [25, 50, 100]\n  timeout: 2h1m",
        },
        Edit::Replace {
            old: "  timeout: 2h",
            new: "  checkpoints: [100]\n  checkpoint_delay: 0",
        },
        Edit::Replace {
            old: "  timeout: 2h",
            new: "  checkpoints: [50, 100]\n  checkpoint_delay: 48h\n  timeout: 49h",
        },
    ]);
}

/// AWS's SkipMatching is for a refresh that carries a launch template.
#[test]
fn skip_matching_needs_a_launch_template() {
    assert_cases(
        &[Case::pipeline("skip matching with a launch configuration")
            .replacing(
                "  kind: template\n  template: red5pro-sm",
                "  kind: configuration",
            )
            .and_inserting_after("  instance_warmup: 180s", "  skip_matching: true")
            .says("refresh.skip_matching is true but launch.kind is `configuration`")
            .at(39, 18)
            .hinting("remove skip_matching")],
    );
}

#[test]
fn skip_matching_is_accepted_with_a_launch_template_and_off_with_a_configuration() {
    assert_valid(&[
        Edit::InsertAfter {
            after: "  instance_warmup: 180s",
            new: "  scale_in_protected_instances: Ignore\n  standby_instances: Terminate\n  skip_matching: true",
        },
        Edit::Both(
            Box::new(Edit::Replace {
                old: "  kind: template\n  template: red5pro-sm",
                new: "  kind: configuration",
            }),
            Box::new(Edit::InsertAfter {
                after: "  instance_warmup: 180s",
                new: "  skip_matching: false",
            }),
        ),
    ]);
}

/// The run lock is the SSM parameter `/red5-rollout/locks/<group>`.
#[test]
fn the_group_name_fits_the_run_lock_parameter() {
    assert_cases(&[
        Case::pipeline("a group name with a space")
            .replacing("auto_scaling_group: red5pro-sm-asg", "auto_scaling_group: red5pro sm asg")
            .says("auto_scaling_group `red5pro sm asg` contains ' ', which the run lock's SSM parameter name may not hold")
            .at(3, 28)
            .hinting("/red5-rollout/locks/red5pro sm asg, whose name allows only a-z, A-Z, 0-9, '_', '.' and '-'"),
        Case::pipeline("a quoted group name with a space")
            .replacing("auto_scaling_group: red5pro-sm-asg", "auto_scaling_group: \"red5pro sm\"")
            .says("auto_scaling_group `red5pro sm` contains ' ', which the run lock's SSM parameter name may not hold")
            .at(3, 29),
        Case::pipeline("a group name with a slash, which would nest the lock")
            .replacing("auto_scaling_group: red5pro-sm-asg", "auto_scaling_group: red5pro/sm-asg")
            .says("auto_scaling_group `red5pro/sm-asg` contains '/', which the run lock's SSM parameter name may not hold")
            .at(3, 28),
        Case::pipeline("a group name with a character SSM refuses")
            .replacing("auto_scaling_group: red5pro-sm-asg", "auto_scaling_group: red5pro-sm@prod")
            .says("auto_scaling_group `red5pro-sm@prod` contains '@', which the run lock's SSM parameter name may not hold")
            .at(3, 31),
        Case::pipeline("an empty group name")
            .replacing("auto_scaling_group: red5pro-sm-asg", "auto_scaling_group: \"\"")
            .says("auto_scaling_group must be 1 to 255 characters")
            .at(3, 21)
            .hinting("write the name of the Auto Scaling group"),
        Case::pipeline("a group name over 255 characters")
            .replacing(
                "auto_scaling_group: red5pro-sm-asg",
                "auto_scaling_group: red5pro-sm-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            )
            .says("auto_scaling_group must be 1 to 255 characters")
            .at(3, 21),
    ]);
}

#[test]
fn a_group_name_of_letters_digits_underscores_dots_and_dashes_is_accepted() {
    assert_valid(&[Edit::Replace {
        old: "auto_scaling_group: red5pro-sm-asg",
        new: "auto_scaling_group: Red5Pro_SM.asg-2",
    }]);
}

/// In the shell templates (the update script, the user data) release values are printed
/// only through `shell_quote`; name templates may print them as they are.
#[test]
fn shell_templates_print_release_values_only_quoted() {
    assert_cases(&[
        Case::pipeline("a version printed as it is")
            .replacing(
                "    echo {{ version | shell_quote }} > /usr/local/red5pro/.red5-rollout-version",
                "    echo {{ version }} > /usr/local/red5pro/.red5-rollout-version",
            )
            .says("update.script: template prints `version` without shell_quote")
            .on_line(20)
            .hinting("write {{ version | shell_quote }}, or set it once (version={{ version | shell_quote }}) and use \"$version\""),
        Case::pipeline("a version joined to text before it is quoted")
            .replacing(
                "    echo {{ version | shell_quote }} > /usr/local/red5pro/.red5-rollout-version",
                "    echo {{ \"v\" ~ version }} > /usr/local/red5pro/.red5-rollout-version",
            )
            .says("update.script: template prints `version` without shell_quote")
            .on_line(20),
        Case::pipeline("a version that another filter changes but does not quote")
            .replacing(
                "    echo {{ version | shell_quote }} > /usr/local/red5pro/.red5-rollout-version",
                "    echo {{ version | upper }} > /usr/local/red5pro/.red5-rollout-version",
            )
            .says("update.script: template prints `version` without shell_quote")
            .on_line(20),
        Case::pipeline("an artifact url printed inside a block")
            .replacing(
                "    curl --fail -o /tmp/red5pro.zip {{ artifact_url | shell_quote }}",
                "    curl --fail -o /tmp/red5pro.zip {% if true %}{{ artifact_url }}{% endif %}",
            )
            .says("update.script: template prints `artifact_url` without shell_quote")
            .on_line(18)
            .hinting("write {{ artifact_url | shell_quote }}"),
        Case::pipeline("an artifact url printed in a branch the check's stand-in does not take")
            .replacing(
                "    curl --fail -o /tmp/red5pro.zip {{ artifact_url | shell_quote }}",
                "    {% if artifact_url.startswith(\"s3://\") %}aws s3 cp {{ artifact_url }} /tmp/red5pro.zip{% endif %}",
            )
            .says("update.script: template prints `artifact_url` without shell_quote")
            .on_line(18),
        Case::pipeline("a checksum printed as it is")
            .replacing(
                "    echo {{ artifact_sha256 | shell_quote }}'  /tmp/red5pro.zip' | sha256sum --check",
                "    echo \"{{ artifact_sha256 }}  /tmp/red5pro.zip\" | sha256sum --check",
            )
            .says("update.script: template prints `artifact_sha256` without shell_quote")
            .on_line(19)
            .hinting("write {{ artifact_sha256 | shell_quote }}"),
        Case::pipeline("a version passed through a variable set unquoted")
            .replacing(
                "    echo {{ version | shell_quote }} > /usr/local/red5pro/.red5-rollout-version",
                "    {% set v = version %}echo {{ v }} > /usr/local/red5pro/.red5-rollout-version",
            )
            .says("update.script: template prints `version` without shell_quote")
            .on_line(20),
        Case::pipeline("a version marked safe instead of quoted")
            .replacing(
                "    echo {{ version | shell_quote }} > /usr/local/red5pro/.red5-rollout-version",
                "    echo {{ version | safe }} > /usr/local/red5pro/.red5-rollout-version",
            )
            .says("update.script: template prints `version` without shell_quote")
            .on_line(20),
        Case::pipeline("a version printed unquoted in the user data")
            .replacing(
                "    echo \"streammanager.ip=$(hostname).example\" >> /tmp/red5-web.properties",
                "    echo {{ version }} > /tmp/red5-version",
            )
            .says("launch.user_data: template prints `version` without shell_quote")
            .on_line(35)
            .hinting("write {{ version | shell_quote }}"),
    ]);
}

#[test]
fn shell_templates_that_quote_release_values_are_accepted() {
    assert_valid(&[
        Edit::Replace {
            old: "    echo {{ version | shell_quote }} > /usr/local/red5pro/.red5-rollout-version",
            new: "    echo {{ version | upper | shell_quote }} {{ \"v\" ~ version | shell_quote }} {{ date }} > /tmp/v",
        },
        Edit::Replace {
            old: "    curl --fail -o /tmp/red5pro.zip {{ artifact_url | shell_quote }}",
            new: "    {% if artifact_url.startswith(\"s3://\") %}aws s3 cp {{ artifact_url | shell_quote }} /tmp/red5pro.zip{% endif %}",
        },
        Edit::Replace {
            old: "    echo \"streammanager.ip=$(hostname).example\" >> /tmp/red5-web.properties",
            new: "    {% set v = version | shell_quote %}echo {{ v }} > /tmp/red5-version",
        },
    ]);
}

#[test]
fn builder_and_launch_values_are_ones_aws_accepts() {
    assert_cases(&[
        Case::pipeline("a builder volume under 16 GB")
            .replacing("  volume_size_gb: 16", "  volume_size_gb: 8")
            .says("builder.volume_size_gb is 8 GB; it must be between 16 and 16384")
            .at(11, 19)
            .hinting("at least 16 GB"),
        Case::pipeline("a fleet volume smaller than the builder's, which is the image's snapshot")
            .replacing("  volume_size_gb: 16", "  volume_size_gb: 30")
            .says("launch.volume_size_gb (20) is smaller than builder.volume_size_gb (30): the new image's root snapshot is the builder's volume, and AWS fails every launch with a smaller volume (InvalidBlockDeviceMapping)")
            .at(32, 19)
            .hinting("set launch.volume_size_gb to at least 30, or make the builder's volume smaller"),
        Case::pipeline("a launch volume under 16 GB")
            .replacing("  volume_size_gb: 20", "  volume_size_gb: 8")
            .says("launch.volume_size_gb is 8 GB; it must be between 16 and 16384")
            .at(32, 19),
        Case::pipeline("an instance type without a dot")
            .replacing("  instance_type: m5.large", "  instance_type: m5large")
            .says("launch.instance_type `m5large` is not an EC2 instance type")
            .at(29, 18)
            .hinting("m5.large"),
        Case::pipeline("a region that is not one")
            .replacing("region: us-east-1", "region: us-east")
            .says("region `us-east` is not an AWS region")
            .at(2, 9)
            .hinting("us-east-1"),
        Case::pipeline("a name that does not match the file")
            .replacing("name: stream-manager", "name: stream-manager-prod")
            .says("pipeline name `stream-manager-prod` does not match the file name `stream-manager`")
            .at(1, 7)
            .hinting("name the file pipelines/stream-manager-prod.yaml, or set `name: stream-manager`"),
        Case::pipeline("a name with characters AWS tags cannot hold")
            .in_file("pipelines/Stream_Manager.yaml")
            .replacing("name: stream-manager", "name: Stream_Manager")
            .says("pipeline name `Stream_Manager` may only hold a-z, 0-9 and '-'")
            .at(1, 7),
        Case::pipeline("a base image that is not an AMI id")
            .replacing("  base_image: from-group", "  base_image: ami-xyz")
            .says("builder.base_image `ami-xyz` is neither `from-group` nor an AMI id")
            .at(6, 15)
            .hinting("ami-0abc1234"),
        Case::pipeline("kind template without a template name")
            .removing("  template: red5pro-sm")
            .says("launch.kind is `template` but launch.template is missing")
            .at(26, 9)
            .hinting("template: NAME"),
        Case::pipeline("a launch template name over 128 characters")
            .replacing("  template: red5pro-sm", concat!("  template: ", "red5pro-stream-manager-production-us-east-1-launch-template-for-the-autoscaling-group-that-runs-the-stream-managers-fleet-v2-2026"))
            .says("launch.template must be 1 to 128 characters")
            .at(27, 13),
        Case::pipeline("kind configuration with a template name")
            .replacing("  kind: template", "  kind: configuration")
            .says("launch.template is set but launch.kind is `configuration`")
            .at(27, 13)
            .hinting("remove `template`, or set `kind: template`"),
        Case::pipeline("no security groups")
            .replacing("  security_groups: [red5pro-sm-sg]", "  security_groups: []")
            .says("launch.security_groups is empty")
            .at(30, 20),
        Case::pipeline("a duration in words")
            .replacing("  timeout: 45m", "  timeout: ten minutes")
            .says("image.timeout: `ten minutes` is not a duration")
            .at(24, 12)
            .hinting("90s, 20m, 1h30m"),
        Case::pipeline("a duration too long to count")
            .replacing("  timeout: 45m", "  timeout: 9999999999999999h")
            .says("image.timeout: `9999999999999999h` is too long a duration")
            .at(24, 12)
            .hinting("90s, 20m, 1h30m"),
        Case::pipeline("an update that may run longer than SSM allows")
            .replacing("  execution_timeout: 30m", "  execution_timeout: 72h")
            .says("update.execution_timeout must be between 1s and 48h")
            .at(14, 22)
            .hinting("1 to 172800 seconds"),
    ]);
}

/// Names that are fine as templates but too long once rendered for a release, and
/// pipelines no release satisfies, are found only with the releases at hand.
#[test]
fn pipelines_are_checked_against_the_releases_they_select() {
    assert_cases(&[
        Case::pipeline_with_releases("an image name longer than an AMI name may be")
            .replacing(
                "  name: \"SM-red5pro-server-{{ version }}-{{ date }}-{{ instance_type_short }}\"",
                "  name: \"SM-red5pro-server-{{ version }}-{{ date }}-{{ artifact_sha256 }}-{{ commit }}\"",
            )
            .says("image.name renders to 139 characters for 12.4.0; an AMI name must have 3 to 128")
            .at(22, 9)
            .hinting("shorten the template; it renders `SM-red5pro-server-12.4.0-20261124-eeb8905c"),
        Case::pipeline_with_releases("a launch template version description over 128 characters")
            .replacing(
                "  name: \"SM-red5pro-server-{{ version }}-{{ date }}-{{ instance_type_short }}-template\"",
                "  name: \"SM-red5pro-server-{{ version }}-{{ date }}-{{ artifact_sha256 }}-{{ commit }}\"",
            )
            .says("launch.name renders to 139 characters for 12.4.0; with `kind: template` it must have 1 to 128")
            .at(28, 9),
        Case::pipeline_with_releases("a launch configuration name over 255 characters")
            .replacing(
                "  kind: template\n  template: red5pro-sm\n  name: \"SM-red5pro-server-{{ version }}-{{ date }}-{{ instance_type_short }}-template\"",
                "  kind: configuration\n  name: \"{{ artifact_sha256 }}-{{ artifact_sha256 }}-{{ artifact_sha256 }}-{{ artifact_sha256 }}-LC\"",
            )
            .says("launch.name renders to 262 characters for 12.4.0; a launch configuration name must have 1 to 255")
            .at(27, 9),
        Case::pipeline_with_releases("a script filter that fails on the release's version")
            .replacing(
                "    echo {{ version | shell_quote }} > /usr/local/red5pro/.red5-rollout-version",
                "    echo {{ version | int }} > /usr/local/red5pro/.red5-rollout-version",
            )
            .says("update.script cannot be rendered for 12.4.0: invalid operation: invalid float literal")
            .on_line(20)
            .hinting("check the filters"),
        Case::pipeline_with_releases("a user data filter that fails on the release's version")
            .replacing(
                "    echo \"streammanager.ip=$(hostname).example\" >> /tmp/red5-web.properties",
                "    echo {{ version | int }} > /tmp/red5-version",
            )
            .says("launch.user_data cannot be rendered for 12.4.0: invalid operation: invalid float literal")
            .on_line(35),
        Case::pipeline_with_releases("a track no release matches")
            .replacing("track: \"^12\"", "track: \"^13\"")
            .says("pipeline stream-manager: no release matches track `^13` (releases: 12.3.0, 12.4.0)")
            .at(4, 8)
            .hinting("widen `track`"),
        Case::pipeline_with_releases("a track only a pre-release matches")
            .replacing("track: \"^12\"", "track: \"^12.5\"")
            .says("pipeline stream-manager: no release matches track `^12.5`: only pre-releases do (12.5.0-rc.1), and the track names none")
            .at(4, 8)
            .hinting(">=12.5.0-rc.1"),
        Case::pipeline_with_releases("a pin with no release file")
            .replacing("track: \"^12\"", "pin: 12.4.1")
            .says("pipeline stream-manager: pin 12.4.1 has no release file")
            .at(4, 6)
            .hinting("add releases/12.4.1.yaml"),
    ]);
}

/// With one instance and a maximum of 100%, AWS terminates the only Stream Manager before
/// its replacement runs. The pipeline alone is valid (a bigger group is fine), so the
/// planner refuses it once it sees the fleet, pointing at the line to change.
#[test]
fn a_single_instance_group_at_max_healthy_100_is_refused_on_the_max_healthy_line() {
    let text = Edit::Replace {
        old: "  min_healthy_percentage: 100\n  max_healthy_percentage: 200",
        new: "  min_healthy_percentage: 90\n  max_healthy_percentage: 100",
    }
    .apply(PIPELINE);
    let pipeline = Pipeline::from_yaml(PIPELINE_FILE, &text).expect("valid on its own");
    let release = Release::from_yaml(RELEASE_FILE, RELEASE).unwrap();
    let rendered = render(&pipeline, &release, TODAY, COMMIT).unwrap();
    let fleet = FleetState {
        group: "red5pro-sm-asg".into(),
        desired_capacity: 1,
        running_version: Some("12.3.0".parse().unwrap()),
        ..Default::default()
    };

    let err = plan_rollout(&pipeline, &release, &rendered, &fleet).unwrap_err();

    let PlanError::WouldTerminateOnlyInstance { group, diagnostic } = &err else {
        panic!("expected WouldTerminateOnlyInstance, got {err:?}");
    };
    assert_eq!(group, "red5pro-sm-asg");
    assert_eq!(
        diagnostic.as_ref(),
        &Diagnostic {
            file: PIPELINE_FILE.into(),
            location: red5_rollout::model::Location::new(38, 27),
            message: "group red5pro-sm-asg has one instance and refresh.max_healthy_percentage is 100: the only Stream Manager would be terminated first".into(),
            hint: Some("set min_healthy_percentage: 100 and max_healthy_percentage: 200 to launch the replacement before terminating".into()),
        }
    );
    assert_eq!(err.hint(), diagnostic.hint.clone().unwrap());

    let two = FleetState {
        desired_capacity: 2,
        ..fleet
    };
    assert!(plan_rollout(&pipeline, &release, &rendered, &two).is_ok());
}

fn read_dir(dir: &str) -> Vec<SourceFile> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<SourceFile> = std::fs::read_dir(root.join(dir))
        .unwrap_or_else(|err| panic!("cannot read {dir}/: {err}"))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .map(|path| {
            let name = path.file_name().unwrap().to_str().unwrap();
            source(
                &format!("{dir}/{name}"),
                &std::fs::read_to_string(&path).unwrap(),
            )
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

#[test]
fn the_shipped_pipelines_and_releases_are_valid() {
    let pipelines = read_dir("pipelines");
    let releases = read_dir("releases");
    assert!(pipelines.len() >= 2 && releases.len() >= 3);
    for file in &pipelines {
        if let Err(problems) = Pipeline::from_yaml(&file.path, &file.text) {
            panic!("{problems}");
        }
    }
    for file in &releases {
        if let Err(problems) = Release::from_yaml(&file.path, &file.text) {
            panic!("{problems}");
        }
    }

    let catalog = Catalog::check(&pipelines, &releases, TODAY, COMMIT);

    assert!(catalog.problems.is_empty(), "{}", catalog.problems);
    assert_eq!(catalog.pipelines.len(), pipelines.len());
    assert_eq!(catalog.releases.len(), releases.len());
    for pipeline in &catalog.pipelines {
        let release = desired_release(pipeline, &catalog.releases).unwrap();
        assert_eq!(release.version.to_string(), "12.4.0", "{}", pipeline.name);
        // WebRTC fleets protect instances from scale-in; AWS's Wait would fail the refresh.
        assert_eq!(
            pipeline.refresh.scale_in_protected_instances,
            HeldInstances::Refresh,
            "{}",
            pipeline.name
        );
    }
}

/// The release a pipeline whose target line reads `target` selects among 12.3.0, 12.4.0
/// and 12.5.0-rc.1.
fn selected_by(target: &'static str) -> String {
    let text = Edit::Replace {
        old: "track: \"^12\"",
        new: target,
    }
    .apply(PIPELINE);
    let catalog = Catalog::check(
        &[source(PIPELINE_FILE, &text)],
        &good_releases(),
        TODAY,
        COMMIT,
    );
    let pipeline = catalog
        .pipeline("stream-manager")
        .expect("a valid pipeline");
    match desired_release(pipeline, &catalog.releases) {
        Ok(release) => release.version.to_string(),
        Err(none) => format!("none: {none}"),
    }
}

#[test]
fn a_track_selects_the_highest_stable_release_it_matches() {
    assert_eq!(selected_by("track: \"^12\""), "12.4.0");
    assert_eq!(selected_by("track: \"~12.3\""), "12.3.0");
    assert_eq!(selected_by("track: \">=12.3, <12.4\""), "12.3.0");
    assert_eq!(selected_by("track: \"*\""), "12.4.0");
}

#[test]
fn a_pin_selects_its_version_even_below_the_newest() {
    assert_eq!(selected_by("pin: 12.3.0"), "12.3.0");
    assert_eq!(selected_by("pin: \"12.4.0\""), "12.4.0");
    assert_eq!(selected_by("pin: 12.5.0-rc.1"), "12.5.0-rc.1");
    let pipeline = Pipeline::from_yaml(
        PIPELINE_FILE,
        &Edit::Replace {
            old: "track: \"^12\"",
            new: "pin: 12.3.0",
        }
        .apply(PIPELINE),
    )
    .unwrap();
    assert_eq!(pipeline.target, Target::Pin(semver::Version::new(12, 3, 0)));
}

#[test]
fn a_pre_release_is_selected_only_when_the_track_names_one() {
    assert_eq!(selected_by("track: \">=12.4\""), "12.4.0");
    assert_eq!(selected_by("track: \">=12.5.0-rc.1\""), "12.5.0-rc.1");
    assert_eq!(selected_by("track: \"^12.5.0-rc.0\""), "12.5.0-rc.1");
    assert_eq!(
        selected_by("track: \"^12.5\""),
        "none: no release matches track `^12.5`: only pre-releases do (12.5.0-rc.1), and the track names none"
    );
}

/// A name template that fits one release can be too long for another: lengths are checked
/// for the release the pipeline selects.
#[test]
fn names_are_checked_for_the_release_that_is_selected() {
    const LONG: &str = "12.5.0-nightly.20261124.0123456789abcdef0123456789abcdef01234567.built-on-the-long-named-ci-runner-7";
    let long_release = RELEASE.replace("12.4.0", LONG);
    let mut releases = good_releases();
    releases.push(source(&format!("releases/{LONG}.yaml"), &long_release));
    let pinned = |target: &str| {
        let text = PIPELINE.replace("track: \"^12\"", target);
        Catalog::check(&[source(PIPELINE_FILE, &text)], &releases, TODAY, COMMIT).problems
    };

    assert!(pinned("track: \"^12\"").is_empty());
    let problems = pinned(&format!("pin: {LONG}"));

    let found: Vec<(usize, &str)> = problems
        .iter()
        .map(|p| (p.location.line, p.message.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (
                22,
                format!("image.name renders to 135 characters for {LONG}; an AMI name must have 3 to 128").as_str()
            ),
            (
                28,
                format!("launch.name renders to 144 characters for {LONG}; with `kind: template` it must have 1 to 128").as_str()
            ),
        ]
    );
}

#[test]
fn an_unquoted_checksum_that_yaml_reads_as_a_number_is_taken_as_written() {
    let digits = "0123456789".repeat(6) + "0123";
    let text = format!(
        "version: 12.4.0\nartifact:\n  url: https://x.example.com/a.zip\n  sha256: {digits}\n"
    );
    let release = red5_rollout::model::Release::from_yaml("releases/12.4.0.yaml", &text).unwrap();
    assert_eq!(release.artifact.sha256, digits);
}

/// `image.from_pipeline` names another pipeline of the repository, one that bakes its own
/// images, in this region or another; each mistake is named at its line with the fix.
#[test]
fn a_promoted_pipeline_names_a_baking_pipeline() {
    let renamed = |name: &str, group: &str, region: &str| {
        PIPELINE
            .replace("name: stream-manager\n", &format!("name: {name}\n"))
            .replace(
                "auto_scaling_group: red5pro-sm-asg",
                &format!("auto_scaling_group: {group}"),
            )
            .replace("region: us-east-1", &format!("region: {region}"))
    };
    let production = |name: &str, group: &str, region: &str, from: &str| {
        crate::support::promoting_text(&renamed(name, group, region), from)
    };
    let check = |files: &[(&str, String)]| {
        let files: Vec<SourceFile> = files.iter().map(|(p, t)| source(p, t)).collect();
        Catalog::check(&files, &good_releases(), TODAY, COMMIT)
    };
    let staging = (PIPELINE_FILE, PIPELINE.to_string());
    // Linked to staging's group and region; in another region each image is copied, so
    // the pipeline knows where from.
    for (region, other) in [("us-east-1", None), ("eu-west-1", Some("us-east-1"))] {
        let linked = check(&[
            staging.clone(),
            (
                "pipelines/production.yaml",
                production("production", "prod-asg", region, "stream-manager"),
            ),
        ]);
        assert!(linked.problems.is_empty(), "{}", linked.problems);
        let promotion = linked
            .pipeline("production")
            .unwrap()
            .image
            .from_pipeline
            .clone()
            .unwrap();
        assert_eq!(
            (
                promotion.pipeline.as_str(),
                promotion.group.as_str(),
                promotion.other_region(region)
            ),
            ("stream-manager", "red5pro-sm-asg", other)
        );
    }

    for (files, expected) in [
        (
            vec![
                staging.clone(),
                (
                    "pipelines/production.yaml",
                    production("production", "prod-asg", "us-east-1", "stagin"),
                ),
            ],
            "pipelines/production.yaml:6:18: image.from_pipeline names stagin, which is no pipeline\n  hint: name one of: stream-manager",
        ),
        (
            vec![(
                "pipelines/production.yaml",
                production("production", "prod-asg", "us-east-1", "production"),
            )],
            "pipelines/production.yaml:6:18: image.from_pipeline names this pipeline, production",
        ),
        (
            vec![
                staging.clone(),
                (
                    "pipelines/production.yaml",
                    production("production", "prod-asg", "us-east-1", "stream-manager"),
                ),
                (
                    "pipelines/dr.yaml",
                    production("dr", "dr-asg", "us-east-1", "production"),
                ),
            ],
            "pipelines/dr.yaml:6:18: image.from_pipeline names production, which bakes no images of its own: it promotes them too\n  hint: name the pipeline that bakes them",
        ),
    ] {
        let problems = check(&files).problems.to_string();
        assert!(problems.contains(expected), "{problems}");
    }
}
