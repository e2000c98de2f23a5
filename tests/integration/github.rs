//! Reporting to GitHub against a mock HTTP server: the requests a rollout makes, in order
//! (commit statuses, the deployment and its statuses, the pull request comment created
//! once then edited), the plan comment, GitHub Enterprise's base address, a GitHub that
//! fails without breaking anything, and no token anywhere but the Authorization header.
//!
//! The events are those of a real rollout against the in-memory cloud, recorded once
//! with paused time and replayed to the reporter in real time (HTTP needs real time).

use red5_rollout::events::{Emitter, Event, Recorder, Sink};
use red5_rollout::github::{Client, ReporterSetup, Settings, plan_comment, plan_marker, start};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SHA: &str = "c0ffee0000000000000000000000000000000000";
const TOKEN: &str = "ghs_secret0123456789abcdefTOKEN";

/// The events of rolling 12.4.0 out on the fake template fleet (`fail`: the refresh fails
/// and AWS rolls it back).
fn recorded_rollout(fail: bool) -> Vec<Event> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let cloud = crate::apply_fake::template_fleet();
        if fail {
            cloud.fail_refresh_at(50);
        }
        let recorder = Arc::new(Recorder::default());
        crate::reporting::rollout_to(cloud, vec![recorder.clone()]).await;
        recorder.events()
    })
}

/// GitHub as it answers a repository `acme/fleet` whose commit came in with pull request 7.
async fn github(prefix: &str) -> MockServer {
    let server = MockServer::start().await;
    let repo = format!("{prefix}/repos/acme/fleet");
    let ok = |body: Value| ResponseTemplate::new(201).set_body_json(body);
    Mock::given(method("POST"))
        .and(path(format!("{repo}/statuses/{SHA}")))
        .respond_with(ok(json!({"id": 1})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{repo}/deployments")))
        .respond_with(ok(json!({"id": 42})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{repo}/deployments/42/statuses")))
        .respond_with(ok(json!({"id": 2})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{repo}/commits/{SHA}/pulls")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{"number": 7}])))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{repo}/issues/7/comments")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"id": 5, "body": "Looks good to me"}
        ])))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{repo}/issues/7/comments")))
        .respond_with(ok(json!({"id": 99})))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path_regex(format!(r"^{repo}/issues/comments/[0-9]+$")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 99})))
        .mount(&server)
        .await;
    server
}

/// Replays `events` to a reporter for `server`; returns the warnings it emitted.
async fn replay(events: Vec<Event>, api: String) -> Vec<Event> {
    let settings = Settings::new(
        &api,
        "acme/fleet",
        TOKEN,
        Some("https://github.example.com/acme/fleet/actions/runs/1".into()),
    )
    .unwrap();
    let client = Client::new(settings)
        .unwrap()
        .with_backoff(vec![Duration::from_millis(10), Duration::from_millis(10)]);
    let warnings = Arc::new(Recorder::default());
    let (reporter, task) = start(ReporterSetup {
        client,
        sha: SHA.into(),
        silent: Default::default(),
        environments: [("stream-manager".to_string(), "production".to_string())].into(),
        warnings: Emitter::new(vec![warnings.clone()]),
    });
    let emitter = Emitter::new(vec![Arc::new(reporter) as Arc<dyn Sink>]);
    for event in events {
        emitter.emit(event);
    }
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("reporting ends")
        .unwrap();
    warnings.events()
}

/// The requests GitHub received, as "METHOD path", and their bodies.
async fn received(server: &MockServer) -> Vec<(String, Value)> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                format!("{} {}", r.method, r.url.path()),
                serde_json::from_slice(&r.body).unwrap_or(Value::Null),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_sets_statuses_records_a_deployment_and_edits_one_pull_request_comment() {
    let events = tokio::task::spawn_blocking(|| recorded_rollout(false))
        .await
        .unwrap();
    let server = github("").await;
    let warnings = replay(events, server.uri()).await;
    assert_eq!(warnings, Vec::<Event>::new());
    let requests = received(&server).await;
    let calls: Vec<&str> = requests.iter().map(|(call, _)| call.as_str()).collect();
    let status = format!("POST /repos/acme/fleet/statuses/{SHA}");
    let patch = "PATCH /repos/acme/fleet/issues/comments/99";
    // Planned: pending status, the deployment and its in_progress status, then the comment
    // (found by its marker among the pull request's comments: not there, so created).
    assert_eq!(
        calls[..7],
        [
            status.as_str(),
            "POST /repos/acme/fleet/deployments",
            "POST /repos/acme/fleet/deployments/42/statuses",
            &format!("GET /repos/acme/fleet/commits/{SHA}/pulls"),
            "GET /repos/acme/fleet/issues/7/comments",
            "POST /repos/acme/fleet/issues/7/comments",
            status.as_str(),
        ]
    );
    // Then per stage: a pending status naming the stage when it starts, and the comment
    // edited at its start and at its end (never per poll).
    assert_eq!(calls.iter().filter(|c| **c == patch).count(), 7 * 2 + 1);
    assert_eq!(calls.iter().filter(|c| **c == status).count(), 1 + 7 + 1);
    assert_eq!(
        calls.iter().filter(|c| c.ends_with("/comments")).count(),
        2,
        "the comment is created once"
    );
    // The end: success on the commit and the deployment, and the comment's outcome.
    let (last_status, last_deployment) = (
        requests.iter().rev().find(|(c, _)| *c == status).unwrap(),
        requests
            .iter()
            .rev()
            .find(|(c, _)| c.ends_with("/deployments/42/statuses"))
            .unwrap(),
    );
    assert_eq!(last_status.1["state"], "success");
    assert_eq!(last_status.1["context"], "red5-rollout/stream-manager");
    assert_eq!(
        last_status.1["target_url"],
        "https://github.example.com/acme/fleet/actions/runs/1"
    );
    assert_eq!(last_deployment.1["state"], "success");
    let deployment = &requests[1].1;
    assert_eq!(deployment["environment"], "production");
    assert_eq!(deployment["ref"], SHA);
    assert_eq!(deployment["payload"]["version"], "12.4.0");
    let first_stage = &requests[6].1;
    assert_eq!(first_stage["state"], "pending");
    assert!(
        first_stage["description"]
            .as_str()
            .unwrap()
            .starts_with("launch-builder: launch a builder"),
        "{first_stage}"
    );
    let comment = requests.iter().rev().find(|(c, _)| c == patch).unwrap().1["body"]
        .as_str()
        .unwrap()
        .to_string();
    insta::with_settings!({filters => vec![(r"\| (done|failed) \| [0-9hms]+ \|", "| $1 | [duration] |")]}, {
        insta::assert_snapshot!("rollout_comment_finished", comment);
    });
    // The token travels in the Authorization header and nowhere else.
    for request in server.received_requests().await.unwrap() {
        assert_eq!(
            request
                .headers
                .get("authorization")
                .unwrap()
                .to_str()
                .unwrap(),
            format!("Bearer {TOKEN}")
        );
        assert!(!String::from_utf8_lossy(&request.body).contains(TOKEN));
        assert!(!request.url.as_str().contains(TOKEN));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_rolled_back_reports_failure_with_what_was_undone() {
    let events = tokio::task::spawn_blocking(|| recorded_rollout(true))
        .await
        .unwrap();
    let server = github("").await;
    replay(events, server.uri()).await;
    let requests = received(&server).await;
    let status = format!("POST /repos/acme/fleet/statuses/{SHA}");
    let last = requests.iter().rev().find(|(c, _)| *c == status).unwrap();
    assert_eq!(last.1["state"], "failure");
    let comment = requests
        .iter()
        .rev()
        .find(|(c, _)| c.starts_with("PATCH"))
        .unwrap()
        .1["body"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(comment.contains("**Failed, rolled back:**"), "{comment}");
    insta::with_settings!({filters => vec![(r"\| (done|failed) \| [0-9hms]+ \|", "| $1 | [duration] |")]}, {
        insta::assert_snapshot!("rollout_comment_rolled_back", comment);
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn github_enterprise_is_reached_under_its_api_path() {
    let events = tokio::task::spawn_blocking(|| recorded_rollout(false))
        .await
        .unwrap();
    let server = github("/api/v3").await;
    let warnings = replay(events, format!("{}/api/v3", server.uri())).await;
    assert_eq!(warnings, Vec::<Event>::new());
    let requests = received(&server).await;
    assert!(!requests.is_empty());
    assert!(
        requests
            .iter()
            .all(|(call, _)| call.contains(" /api/v3/repos/acme/fleet/")),
        "{requests:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_github_costs_a_warning_and_a_bounded_number_of_attempts_never_the_rollout() {
    let events = tokio::task::spawn_blocking(|| recorded_rollout(false))
        .await
        .unwrap();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({"message": "Server Error"})))
        .mount(&server)
        .await;
    let warnings = replay(events, server.uri()).await;
    // Three attempts (two retries), then one warning; the pipeline's reporting stops.
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let Event::ReportWarning { pipeline, message } = &warnings[0] else {
        panic!("{warnings:?}");
    };
    assert_eq!(pipeline, "stream-manager");
    assert!(message.contains("GitHub answered 500"), "{message}");
    assert!(!message.contains(TOKEN));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_plan_comment_is_posted_once_then_edited_in_place() {
    let server = MockServer::start().await;
    let repo = "/repos/acme/fleet";
    let plan = crate::support::Scenario::new("stream-manager")
        .release("12.3.0")
        .release("12.4.0")
        .fleet_on("12.3.0")
        .plan();
    let body = plan_comment(&plan, Some((100, 200)));
    insta::assert_snapshot!("plan_comment", body);
    // The first push: no comment carries the marker yet.
    Mock::given(method("GET"))
        .and(path(format!("{repo}/issues/7/comments")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{repo}/issues/7/comments")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"id": 5, "body": "Looks good to me"},
            {"id": 77, "body": body.clone()}
        ])))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{repo}/issues/7/comments")))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 77})))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(format!("{repo}/issues/comments/77")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 77})))
        .mount(&server)
        .await;
    let client =
        Client::new(Settings::new(&server.uri(), "acme/fleet", TOKEN, None).unwrap()).unwrap();
    let marker = plan_marker("stream-manager");
    assert_eq!(client.upsert_comment(7, None, &marker, &body).await, Ok(77));
    assert_eq!(client.upsert_comment(7, None, &marker, &body).await, Ok(77));
    let calls: Vec<String> = received(&server)
        .await
        .into_iter()
        .map(|(c, _)| c)
        .collect();
    assert_eq!(
        calls,
        [
            "GET /repos/acme/fleet/issues/7/comments",
            "POST /repos/acme/fleet/issues/7/comments",
            "GET /repos/acme/fleet/issues/7/comments",
            "PATCH /repos/acme/fleet/issues/comments/77",
        ]
    );
}

#[test]
fn settings_never_show_the_token() {
    let settings = Settings::new("https://api.github.com", "acme/fleet", TOKEN, None).unwrap();
    let shown = format!("{settings:?}");
    assert!(!shown.contains(TOKEN), "{shown}");
    assert!(shown.contains("[hidden]"));
    assert!(Settings::new("https://api.github.com", "no-slash", TOKEN, None).is_none());
    assert!(Settings::new("https://api.github.com", "acme/fleet", "", None).is_none());
}

#[test]
fn the_rollout_comment_reads_planned_then_in_progress() {
    let plan = crate::support::Scenario::new("stream-manager")
        .release("12.3.0")
        .release("12.4.0")
        .fleet_on("12.3.0")
        .plan();
    let mut report = red5_rollout::github::RolloutReport::new(plan, None);
    insta::assert_snapshot!("rollout_comment_planned", report.comment());
    report.stages.insert(
        red5_rollout::plan::Stage::LaunchBuilder,
        red5_rollout::github::StageReport {
            state: "done",
            duration: Some(Duration::from_secs(34)),
            resources: vec!["i-0123456789abcdef0".into()],
        },
    );
    report.stages.insert(
        red5_rollout::plan::Stage::ApplyUpdate,
        red5_rollout::github::StageReport {
            state: "running",
            duration: None,
            resources: Vec::new(),
        },
    );
    insta::assert_snapshot!("rollout_comment_in_progress", report.comment());
}
