//! What AWS's own history says a wait will take: the shortest recorded duration of each
//! step of a rollout, read from the runner's earlier images (each tagged with how long its
//! bake's steps took) and from the group's past instance refreshes (AWS keeps their start
//! and end). A wait polls sparsely until half of that, then as densely as one without
//! history (see [`crate::wait::Backoff::delay`]); a step with no history is waited for as
//! before. Nothing here is a constant tuned to an emulator: every figure was measured.

use crate::cloud::{Image, Refresh, RefreshStatus};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Set on an image once it is available: how long the steps of its bake took, in whole
/// seconds, e.g. `ready=48 update=131 stop=35 image=290`.
pub const TAG_TIMINGS: &str = "red5-rollout:timings";

/// A step of a rollout that the runner waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// From RunInstances to the builder's SSM agent online.
    BuilderReady,
    /// From SendCommand to the update script's end.
    Update,
    /// From StopInstances to the builder stopped.
    Stop,
    /// From CreateImage to the image available.
    Image,
    /// From StartInstanceRefresh to the refresh's end.
    Refresh,
}

impl Step {
    const BAKED: [Step; 4] = [Step::BuilderReady, Step::Update, Step::Stop, Step::Image];

    fn key(self) -> &'static str {
        match self {
            Step::BuilderReady => "ready",
            Step::Update => "update",
            Step::Stop => "stop",
            Step::Image => "image",
            Step::Refresh => "refresh",
        }
    }
}

/// How long the steps of one bake took, as this run measured them (a step this run did
/// not start from its request, such as one it resumed, is not measured).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timings(BTreeMap<Step, Duration>);

impl Timings {
    pub fn record(&mut self, step: Step, took: Duration) {
        self.0.insert(step, took);
    }

    pub fn get(&self, step: Step) -> Option<Duration> {
        self.0.get(&step).copied()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The [`TAG_TIMINGS`] value: the bake's steps in whole seconds (at least 1).
    pub fn to_tag(&self) -> String {
        Step::BAKED
            .iter()
            .filter_map(|step| {
                let took = self.get(*step)?;
                Some(format!("{}={}", step.key(), took.as_secs().max(1)))
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Reads a [`TAG_TIMINGS`] value; what it cannot read is left out.
    pub fn parse(text: &str) -> Timings {
        let mut timings = Timings::default();
        for pair in text.split_whitespace() {
            let Some((key, secs)) = pair.split_once('=') else {
                continue;
            };
            let step = Step::BAKED.into_iter().find(|s| s.key() == key);
            if let (Some(step), Ok(secs)) = (step, secs.parse::<u64>())
                && secs > 0
            {
                timings.record(step, Duration::from_secs(secs));
            }
        }
        timings
    }
}

/// The shortest recorded duration of each step, from AWS's history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Priors(BTreeMap<Step, Duration>);

impl Priors {
    /// From the pipeline's images (their [`TAG_TIMINGS`]) and the group's refreshes (those
    /// that succeeded, with a start and an end).
    pub fn from_history(images: &[Image], refreshes: &[Refresh]) -> Priors {
        let mut priors = Priors::default();
        for image in images {
            if let Some(tag) = image.tags.get(TAG_TIMINGS) {
                for (step, took) in Timings::parse(tag).0 {
                    priors.keep_shortest(step, took);
                }
            }
        }
        for refresh in refreshes {
            if refresh.status != RefreshStatus::Successful {
                continue;
            }
            if let (Some(start), Some(end)) = (refresh.started, refresh.ended)
                && end > start
            {
                let took = Duration::from_secs(u64::try_from(end - start).unwrap_or(0));
                priors.keep_shortest(Step::Refresh, took);
            }
        }
        priors
    }

    fn keep_shortest(&mut self, step: Step, took: Duration) {
        let shortest = self.0.entry(step).or_insert(took);
        *shortest = (*shortest).min(took);
    }

    /// The shortest recorded duration of `step`, if AWS's history has one.
    pub fn expected(&self, step: Step) -> Option<Duration> {
        self.0.get(&step).copied()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::{ImageStatus, Tags};

    fn image(timings: Option<&str>) -> Image {
        let mut tags = Tags::new();
        if let Some(t) = timings {
            tags.insert(TAG_TIMINGS.into(), t.into());
        }
        Image {
            id: "ami-1".into(),
            name: "sm".into(),
            status: ImageStatus::Available,
            tags,
            root_device: None,
            snapshots: Vec::new(),
        }
    }

    fn refresh(status: RefreshStatus, started: i64, ended: Option<i64>) -> Refresh {
        Refresh {
            id: "r".into(),
            status,
            status_reason: None,
            percentage: 100,
            instances_to_update: 0,
            desired_template_version: None,
            started: Some(started),
            ended,
        }
    }

    #[test]
    fn timings_round_trip_through_their_tag() {
        let mut t = Timings::default();
        t.record(Step::BuilderReady, Duration::from_millis(48_700));
        t.record(Step::Image, Duration::from_millis(300));
        assert_eq!(t.to_tag(), "ready=48 image=1");
        let back = Timings::parse(&t.to_tag());
        assert_eq!(back.get(Step::BuilderReady), Some(Duration::from_secs(48)));
        assert_eq!(back.get(Step::Image), Some(Duration::from_secs(1)));
        assert_eq!(back.get(Step::Update), None);
        let odd = Timings::parse("ready=x update=0 nonsense stop=12 refresh=5");
        assert_eq!(odd.0.len(), 1, "only stop=12 is a bake step with a figure");
    }

    #[test]
    fn priors_keep_the_shortest_recorded_duration_of_each_step() {
        let images = [
            image(Some("ready=60 update=120")),
            image(Some("ready=45 image=300")),
            image(None),
        ];
        let refreshes = [
            refresh(RefreshStatus::Successful, 1000, Some(1400)),
            refresh(RefreshStatus::Successful, 2000, Some(2250)),
            refresh(RefreshStatus::Failed, 3000, Some(3010)),
            refresh(RefreshStatus::InProgress, 4000, None),
        ];
        let p = Priors::from_history(&images, &refreshes);
        assert_eq!(
            p.expected(Step::BuilderReady),
            Some(Duration::from_secs(45))
        );
        assert_eq!(p.expected(Step::Update), Some(Duration::from_secs(120)));
        assert_eq!(p.expected(Step::Image), Some(Duration::from_secs(300)));
        assert_eq!(p.expected(Step::Stop), None);
        assert_eq!(
            p.expected(Step::Refresh),
            Some(Duration::from_secs(250)),
            "only successful refreshes count"
        );
        assert!(Priors::from_history(&[], &[]).is_empty());
    }
}
