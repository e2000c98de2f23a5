//! What a run reports while it works. Stages and the run never print: they emit [`Event`]s
//! and sinks (`report/`) decide how they look: plain timestamped lines in CI and on a
//! terminal, or JSON lines for tools.

use crate::plan::{Plan, Stage, StagePlan};
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum StageOutcome {
    /// The stage did its work; `detail` names the resource (an id, a version).
    Done {
        detail: String,
    },
    Skipped {
        reason: String,
    },
    Failed {
        error: String,
    },
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
    fn emit(&self, event: &Event);
}

/// Hands every event to several sinks.
#[derive(Clone, Default)]
pub struct Emitter {
    sinks: Vec<Arc<dyn Sink>>,
}

impl Emitter {
    pub fn new(sinks: Vec<Arc<dyn Sink>>) -> Self {
        Emitter { sinks }
    }

    pub fn emit(&self, event: Event) {
        for sink in &self.sinks {
            sink.emit(&event);
        }
    }
}

/// Keeps every event, for tests and for summaries.
#[derive(Default)]
pub struct Recorder {
    events: Mutex<Vec<Event>>,
}

impl Recorder {
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().expect("recorder lock").clone()
    }
}

impl Sink for Recorder {
    fn emit(&self, event: &Event) {
        self.events
            .lock()
            .expect("recorder lock")
            .push(event.clone());
    }
}
