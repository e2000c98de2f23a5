//! What a run's events look like to their audiences: the JSON lines for tools and the plain
//! log for CI, from one rollout against the in-memory cloud with a clock that ticks one
//! second per event, so that the whole output is a stable snapshot.

use crate::support::{release, shipped_pipeline};
use red5_rollout::cloud::Cloud;
use red5_rollout::events::{Clock, EVENTS_SCHEMA, Emitter, Recorder, Sink};
use red5_rollout::plan::RetryRule;
use red5_rollout::report::{ActionsFiles, Bars, Display, JsonLines, PlainLines, Summary};
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
    let (json, log) = (Buffer::default(), Buffer::default());
    let sinks: Vec<Arc<dyn Sink>> = vec![
        Arc::new(JsonLines::new(json.clone())),
        Arc::new(PlainLines::new(log.clone(), Display::Log)),
    ];
    rollout_to(crate::apply_fake::template_fleet(), sinks).await;
    (json.text(), log.text())
}

/// Rolls 12.4.0 out on `cloud` with the ticking clock, reporting to `sinks`.
pub(crate) async fn rollout_to(
    cloud: Arc<red5_rollout::cloud::fake::FakeCloud>,
    sinks: Vec<Arc<dyn Sink>>,
) {
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
            record_failures: false,
        },
    )
    .await;
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
    // Waits poll with jitter: how many progress events a wait makes, and so the times,
    // differ from run to run. The snapshot keeps everything else.
    let steady: String = json
        .lines()
        .filter(|line| {
            !line.contains(r#""event":"stage-progress""#)
                && !line.contains(r#""event":"refresh-progress""#)
        })
        .map(|line| format!("{line}\n"))
        .collect();
    insta::with_settings!({filters => vec![
        (r#""at":"[^"]+""#, r#""at":"[time]""#),
        (r#""(run_)?elapsed":[0-9.]+"#, r#""${1}elapsed":"[seconds]""#),
        (r#""reads":[0-9]+,"mutating":[0-9]+"#, r#""reads":"[polls]","mutating":"[n]""#),
    ]}, {
        insta::assert_snapshot!("events_json", steady);
    });
}

#[tokio::test(start_paused = true)]
async fn the_plain_log_reads_as_a_ci_log_with_the_events_times() {
    let (_, log) = rollout().await;
    let steady: String = log
        .lines()
        .filter(|line| !line.contains(": waiting for "))
        .map(|line| format!("{line}\n"))
        .collect();
    insta::with_settings!({filters => vec![
        (r"(?m)^2026-11-24T08:[0-9]{2}:[0-9]{2}Z", "[time]"),
        (r"(done in|FAILED after) [0-9hms]+", "$1 [duration]"),
        (r"[0-9]+ AWS calls, [0-9]+ of them", "[polls] AWS calls, [n] of them"),
    ]}, {
        insta::assert_snapshot!("plain_log", steady);
    });
}

#[tokio::test(start_paused = true)]
async fn the_terminal_summary_lists_each_stage_with_its_result_duration_and_resources() {
    let recorder = Arc::new(Recorder::default());
    rollout_to(crate::apply_fake::template_fleet(), vec![recorder.clone()]).await;
    let mut summary = Summary::default();
    for event in recorder.events() {
        summary.record(&event);
    }
    insta::with_settings!({filters => vec![
        (r"  (done|FAILED) +[0-9hms]+ +", "  $1  [duration]  "),
        (r"[0-9]+ AWS calls, [0-9]+ of them", "[polls] AWS calls, [n] of them"),
    ]}, {
        insta::assert_snapshot!("summary_table", summary.table());
    });
}

/// A terminal that keeps what is written to it, for the bars.
#[derive(Debug, Default)]
struct Screen(Mutex<String>);

impl indicatif::TermLike for Screen {
    fn width(&self) -> u16 {
        160
    }
    fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn write_line(&self, line: &str) -> std::io::Result<()> {
        let mut screen = self.0.lock().unwrap();
        screen.push_str(line);
        screen.push('\n');
        Ok(())
    }
    fn write_str(&self, text: &str) -> std::io::Result<()> {
        self.0.lock().unwrap().push_str(text);
        Ok(())
    }
    fn clear_line(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Debug, Clone, Default)]
struct SharedScreen(Arc<Screen>);

impl indicatif::TermLike for SharedScreen {
    fn width(&self) -> u16 {
        self.0.width()
    }
    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_up(n)
    }
    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_down(n)
    }
    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_right(n)
    }
    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_left(n)
    }
    fn write_line(&self, line: &str) -> std::io::Result<()> {
        self.0.write_line(line)
    }
    fn write_str(&self, text: &str) -> std::io::Result<()> {
        self.0.write_str(text)
    }
    fn clear_line(&self) -> std::io::Result<()> {
        self.0.clear_line()
    }
    fn flush(&self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_update_prints_its_last_lines_above_the_bars_and_the_summary_at_the_end() {
    let cloud = crate::apply_fake::template_fleet();
    cloud.fail_next_command(
        "downloading\nsha256sum: WARNING: 1 computed checksum did NOT match",
        1,
    );
    let screen = SharedScreen::default();
    let bars = Bars::with_target(indicatif::ProgressDrawTarget::term_like(Box::new(
        screen.clone(),
    )));
    rollout_to(cloud, vec![Arc::new(bars)]).await;
    let shown = screen.0.0.lock().unwrap().clone();
    assert_eq!(
        shown.matches("computed checksum did NOT match").count(),
        1,
        "the tail is shown once:\n{shown}"
    );
    for expected in [
        "stream-manager apply-update: the update script's last 2 line(s):",
        "  | downloading",
        "  | sha256sum: WARNING: 1 computed checksum did NOT match",
        "stream-manager apply-update: FAILED after",
        "stream-manager: FAILED, fleet untouched",
        "  launch-builder  done",
    ] {
        assert!(shown.contains(expected), "{expected:?} not in:\n{shown}");
    }
}

#[tokio::test(start_paused = true)]
async fn inside_actions_the_job_summary_outputs_and_log_groups_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let (summary_file, output_file) = (dir.path().join("summary.md"), dir.path().join("output"));
    std::fs::write(&summary_file, "earlier steps' summary\n").unwrap();
    let log = Buffer::default();
    let sinks: Vec<Arc<dyn Sink>> = vec![
        Arc::new(ActionsFiles::new(
            Some(summary_file.clone()),
            Some(output_file.clone()),
        )),
        Arc::new(PlainLines::new(log.clone(), Display::Log).with_groups()),
    ];
    rollout_to(crate::apply_fake::template_fleet(), sinks).await;

    let summary = std::fs::read_to_string(&summary_file).unwrap();
    assert!(
        summary.starts_with("earlier steps' summary\n"),
        "appended, not replaced"
    );
    insta::with_settings!({filters => vec![
        (r"\| (done|FAILED) \| [0-9hms]+ \|", "| $1 | [duration] |"),
        (r"[0-9]+ AWS calls, [0-9]+ of them", "[polls] AWS calls, [n] of them"),
    ]}, {
        insta::assert_snapshot!("step_summary", summary);
    });
    assert_eq!(
        std::fs::read_to_string(&output_file).unwrap(),
        "pipelines=[\"stream-manager\"]\nversions={\"stream-manager\":\"12.4.0\"}\nresults={\"stream-manager\":\"converged\"}\n"
    );
    let log = log.text();
    assert_eq!(log.matches("::group::").count(), 7, "{log}");
    assert_eq!(log.matches("::endgroup::").count(), 7, "{log}");
    assert!(
        log.lines().any(|l| l.starts_with("::group::2026-11-24T")
            && l.ends_with("stream-manager cleanup: always")),
        "{log}"
    );
}
