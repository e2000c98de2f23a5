//! What a run reports while it works. Stages and the run never print: they emit [`Event`]s
//! and sinks (`report/`) decide how they look: plain timestamped lines in CI and on a
//! terminal, or JSON lines for tools. The emitter stamps each event with its time and the
//! run's elapsed time, from a clock that tests replace.

use crate::plan::{Plan, Stage, StagePlan};
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;

/// The name and version of the JSON events' shape (docs/events-schema.md).
pub const EVENTS_SCHEMA: &str = "red5-rollout/events/v1";

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    RunStarted {
        run: String,
        commit: String,
        pipelines: Vec<String>,
    },
    Planned {
        plan: Box<Plan>,
    },
    StageStarted {
        pipeline: String,
        stage: Stage,
        reason: String,
    },
    /// A wait's progress: "waiting for ami-123 to be available, 4m of 45m".
    StageProgress {
        pipeline: String,
        stage: Stage,
        message: String,
        #[serde(with = "secs")]
        elapsed: Duration,
        #[serde(with = "secs")]
        budget: Duration,
    },
    /// An instance refresh's percentage, when it changes.
    RefreshProgress {
        pipeline: String,
        refresh: String,
        percentage: u8,
    },
    /// A line of the update script's output.
    StageOutput {
        pipeline: String,
        stage: Stage,
        line: String,
    },
    StageFinished {
        pipeline: String,
        stage: Stage,
        outcome: StageOutcome,
        #[serde(with = "secs")]
        elapsed: Duration,
    },
    PipelineFinished {
        pipeline: String,
        result: PipelineResult,
        message: String,
        /// The stage that failed, if one did.
        #[serde(skip_serializing_if = "Option::is_none")]
        failed_stage: Option<Stage>,
        /// Whether the run changed the group.
        touched: bool,
        /// What was done about the failure, if there was one.
        #[serde(skip_serializing_if = "Option::is_none")]
        recovery: Option<Recovery>,
        /// The AWS calls this pipeline made (every HTTP request, retries included), when
        /// they are counted.
        #[serde(skip_serializing_if = "Option::is_none")]
        aws_calls: Option<crate::cloud::meter::CallCount>,
    },
    /// The lease of a run that died was taken over; this run resumes its work.
    LeaseTakenOver {
        pipeline: String,
        holder: String,
    },
    /// A no-op apply removed the lease of a run that died.
    LeaseCleared {
        pipeline: String,
        holder: String,
    },
    /// Another run took this run's lease over (it was taken for dead).
    LeaseLost {
        pipeline: String,
        group: String,
    },
    /// Right before a stage, what AWS shows now decides another action than the plan that
    /// was shown (someone else's run, a resource that appeared or went away); the run
    /// follows `now`.
    StageReplanned {
        pipeline: String,
        stage: Stage,
        planned: StagePlan,
        now: StagePlan,
    },
    /// Ctrl-C or SIGTERM arrived (`count` 1: start nothing new and clean up; 2: cleanup
    /// goes on, one more quits at once).
    Interrupted {
        count: u8,
    },
    /// Reporting somewhere (GitHub) failed after its retries; the rollout goes on.
    ReportWarning {
        pipeline: String,
        message: String,
    },
    /// Every pipeline of the run has ended.
    RunFinished {
        run: String,
        pipelines: Vec<PipelineOutcome>,
    },
    /// `watch`: a group changed since the runner last left it; `healing` when `--heal`
    /// corrects it now.
    Drifted {
        pipeline: String,
        group: String,
        drift: crate::drift::Drift,
        healing: bool,
    },
    /// `watch`: what a cycle found at `commit` (empty when the branch could not be read),
    /// or why it could not look.
    Watched {
        commit: String,
        message: String,
    },
}

/// What was done about a failure before the run ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "recovery", rename_all = "kebab-case")]
pub enum Recovery {
    /// Nothing was needed, or nothing could be done.
    Nothing,
    /// A refresh is still running: it is left to AWS to finish or roll back.
    RefreshRunning,
    /// A swapped launch configuration group was moved back before any instance was
    /// replaced.
    SwapUndone { previous: String },
    /// Moving it back failed too.
    SwapUndoFailed { error: String },
}

/// How one pipeline ended, in `run-finished`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PipelineOutcome {
    pub pipeline: String,
    pub result: PipelineResult,
}

/// An event with when it happened: the time of day and how long the run had been going.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stamped {
    pub schema: &'static str,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    #[serde(with = "secs")]
    pub run_elapsed: Duration,
    #[serde(flatten)]
    pub event: Event,
}

/// Where events get their time: the system's, or a test's.
pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
}

/// The system's clock, in UTC.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum StageOutcome {
    /// The stage did its work: `produced` names what it made, adopted or followed (sinks
    /// write the sentence).
    Done {
        produced: Box<Produced>,
    },
    Skipped {
        reason: String,
    },
    /// The stage failed: the error and its causes on one line, and for a failed update
    /// script its last lines of output (shown once, by the sink).
    Failed {
        /// What kind of failure: `aws` (an AWS call failed; `error` has its code and
        /// class), `timed-out`, `update-failed`, `image-failed`, `no-base-image`,
        /// `precondition`, `refresh-failed`, `other-refresh`, `interrupted`.
        kind: &'static str,
        error: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        output_tail: Vec<String>,
    },
}

impl StageOutcome {
    /// The stage did its work, producing `produced`.
    pub fn done(produced: Produced) -> StageOutcome {
        StageOutcome::Done {
            produced: Box::new(produced),
        }
    }
}

/// The resources a stage made, adopted or followed, by kind: what a summary table or a pull
/// request comment lists next to the stage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Produced {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub builder: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_name: Option<String>,
    /// A template version number or a launch configuration name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percentage: Option<u8>,
    /// Builders terminated by cleanup.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub terminated: Vec<String>,
    /// Builders left running on purpose (`--keep-builder`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<String>,
    /// The builder or image was left by an earlier run and adopted.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub adopted: bool,
    /// The state of an adopted, updated builder that goes on to the image as it is
    /// (`stopping`, `stopped`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub builder_state: Option<String>,
    /// The image a builder was launched from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_image: Option<String>,
    /// What `config` is: a template version or a launch configuration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_kind: Option<crate::model::LaunchKind>,
    /// The configuration the group was moved from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_config: Option<String>,
    /// A group on `$Latest` / `$Default` pinned to the number it stood for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned: Option<Pinned>,
    /// The group tagged with the release it runs now, and that release.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tagged: Option<(String, String)>,
}

/// A launch template group pinned from an alias to a version number.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Pinned {
    pub group: String,
    pub template: String,
    pub alias: String,
    pub version: u64,
}

impl Produced {
    pub fn is_empty(&self) -> bool {
        *self == Produced::default()
    }

    /// The resource ids, in the order of the fields, for a table cell.
    pub fn ids(&self) -> Vec<String> {
        if let Some(pinned) = &self.pinned
            && self.config.is_none()
        {
            return vec![format!("{} v{}", pinned.template, pinned.version)];
        }
        let mut ids: Vec<String> = [
            &self.builder,
            &self.command,
            &self.image,
            &self.config,
            &self.refresh,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        ids.extend(self.terminated.iter().cloned());
        ids
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PipelineResult {
    /// The group runs the desired release.
    Converged,
    /// Nothing needed doing.
    UpToDate,
    /// A stage failed after the fleet was touched; it was moved back to where it was.
    RolledBack,
    /// A stage failed before the fleet was touched.
    FailedUntouched,
    /// A stage failed after the fleet was touched (the group pinned or swapped, a refresh
    /// started), and it was not moved back.
    FailedTouched,
    /// A refresh ended without a full rollback (failed, cancelled, or its rollback failed):
    /// the group's instances run different configurations.
    MixedFleet,
    /// Ctrl-C or SIGTERM.
    Interrupted,
    /// Another run holds the group.
    LockHeld,
}

mod secs {
    use serde::Serializer;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
    }
}

/// Where events go. Sinks must be cheap: they are called on the run's tasks.
pub trait Sink: Send + Sync {
    fn emit(&self, event: &Stamped);
}

/// Stamps every event and hands it to several sinks.
#[derive(Clone)]
pub struct Emitter {
    sinks: Vec<Arc<dyn Sink>>,
    clock: Arc<dyn Clock>,
    started: OffsetDateTime,
}

impl Default for Emitter {
    fn default() -> Self {
        Emitter::new(Vec::new())
    }
}

impl Emitter {
    /// Sinks stamped with the system clock; the run's time starts now.
    pub fn new(sinks: Vec<Arc<dyn Sink>>) -> Self {
        Emitter::with_clock(sinks, Arc::new(SystemClock))
    }

    pub fn with_clock(sinks: Vec<Arc<dyn Sink>>, clock: Arc<dyn Clock>) -> Self {
        let started = clock.now();
        Emitter {
            sinks,
            clock,
            started,
        }
    }

    pub fn emit(&self, event: Event) {
        let at = self.clock.now();
        let stamped = Stamped {
            schema: EVENTS_SCHEMA,
            at,
            run_elapsed: (at - self.started).try_into().unwrap_or_default(),
            event,
        };
        for sink in &self.sinks {
            sink.emit(&stamped);
        }
    }
}

/// Keeps every event, for tests and for summaries.
#[derive(Default)]
pub struct Recorder {
    events: Mutex<Vec<Stamped>>,
}

impl Recorder {
    pub fn events(&self) -> Vec<Event> {
        self.stamped().into_iter().map(|s| s.event).collect()
    }

    pub fn stamped(&self) -> Vec<Stamped> {
        self.events.lock().expect("recorder lock").clone()
    }
}

impl Sink for Recorder {
    fn emit(&self, event: &Stamped) {
        self.events
            .lock()
            .expect("recorder lock")
            .push(event.clone());
    }
}
