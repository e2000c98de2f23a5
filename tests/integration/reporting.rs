//! What a run's events look like to their audiences: the JSON lines for tools and the plain
//! log for CI, from one rollout against the in-memory cloud with a clock that ticks one
//! second per event, so that the whole output is a stable snapshot.

use crate::support::{release, shipped_pipeline};
use red5_rollout::cloud::Cloud;
use red5_rollout::events::{Clock, EVENTS_SCHEMA, Emitter, Sink};
use red5_rollout::plan::RetryRule;
use red5_rollout::report::{Display, JsonLines, PlainLines};
use red5_rollout::run::{RunOptions, prepare, run_all};
use std::io::Write;
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;
use time::macros::datetime;

/// A clock that starts at 08:00:00 and moves one second each time it is read.
struct Ticking(Mutex<OffsetDateTime>);

impl Clock for Ticking {
    fn now(&self) -> OffsetDateTime {
        let mut now = self.0.lock().unwrap();
        let at = *now;
        *now += time::Duration::seconds(1);
        at
    }
}

/// A writer whose bytes the test reads afterwards.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// Rolls 12.4.0 out on the fake template fleet; returns the JSON lines and the plain log.
async fn rollout() -> (String, String) {
    let cloud = crate::apply_fake::template_fleet();
    let pipeline = shipped_pipeline("stream-manager");
    let dyn_cloud: Arc<dyn Cloud> = cloud.clone();
    let job = prepare(
        dyn_cloud,
        &pipeline,
        &release("12.4.0"),
        "c0ffee0000000000000000000000000000000000",
        crate::support::DATE,
        &|_| RetryRule::ALWAYS,
    )
    .await
    .unwrap();
    let (json, log) = (Buffer::default(), Buffer::default());
    let sinks: Vec<Arc<dyn Sink>> = vec![
        Arc::new(JsonLines::new(json.clone())),
        Arc::new(PlainLines::new(log.clone(), Display::Log)),
    ];
    let clock = Arc::new(Ticking(Mutex::new(datetime!(2026-11-24 08:00:00 UTC))));
    let events = Emitter::with_clock(sinks, clock);
    let (_keep, interrupted) = tokio::sync::watch::channel(false);
    run_all(
        vec![job],
        "20261124T080000Z-4f2a",
        "c0ffee0000000000000000000000000000000000",
        "build-host",
        events,
        interrupted,
        RunOptions {
            keep_builder: false,
            concurrency: 1,
            lease: red5_rollout::lease::LeaseTerms::DEFAULT,
            ci_run: None,
            ci_url: None,
        },
    )
    .await;
    (json.text(), log.text())
}

#[tokio::test(start_paused = true)]
async fn every_json_line_is_a_stamped_event_of_the_documented_schema() {
    let (json, _) = rollout().await;
    let mut last_elapsed = -1.0;
    let mut names = Vec::new();
    for line in json.lines() {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert_eq!(event["schema"], EVENTS_SCHEMA, "{line}");
        let at = event["at"].as_str().unwrap();
        OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).unwrap();
        let elapsed = event["run_elapsed"].as_f64().unwrap();
        assert!(elapsed > last_elapsed, "{line}");
        last_elapsed = elapsed;
        names.push(event["event"].as_str().unwrap().to_string());
    }
    assert_eq!(names.first().map(String::as_str), Some("run-started"));
    assert_eq!(names.last().map(String::as_str), Some("run-finished"));
    insta::assert_snapshot!("events_json", json);
}

#[tokio::test(start_paused = true)]
async fn the_plain_log_reads_as_a_ci_log_with_the_events_times() {
    let (_, log) = rollout().await;
    insta::assert_snapshot!("plain_log", log);
}
