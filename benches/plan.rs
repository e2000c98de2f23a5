//! Benchmark: validate and plan 200 pipelines against 500 releases, read from a real git
//! repository, as `plan` does. Prints wall time per phase and the process's peak memory.
//!
//! Targets (issue "The core"): under 100 ms and under 50 MB peak.
//! Run with: `cargo bench --bench plan`

use red5_rollout::fleet::{FleetState, ImageRecord, ImageState};
use red5_rollout::model::{desired_release, render};
use red5_rollout::plan::plan_rollout;
use red5_rollout::repo::Repo;
use std::process::Command;
use std::time::Instant;

const PIPELINES: usize = 200;
const RELEASES: usize = 500;
const ROUNDS: usize = 5;

fn main() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let root = dir.path();
    std::fs::create_dir_all(root.join("pipelines")).unwrap();
    std::fs::create_dir_all(root.join("releases")).unwrap();
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/pipelines/stream-manager.yaml"
    ))
    .unwrap();
    for i in 0..PIPELINES {
        let name = format!("sm-{i:03}");
        let text = shipped
            .replace("name: stream-manager\n", &format!("name: {name}\n"))
            .replace(
                "auto_scaling_group: red5pro-sm-asg",
                &format!("auto_scaling_group: red5pro-sm-asg-{i:03}"),
            )
            .replace("track: \"^12\"", &format!("track: \"^{}\"", 10 + i % 5));
        std::fs::write(root.join(format!("pipelines/{name}.yaml")), text).unwrap();
    }
    for i in 0..RELEASES {
        let version = format!("{}.{}.{}", 10 + i % 5, (i / 5) % 20, i / 100);
        let text = format!(
            "version: {version}\nartifact:\n  url: https://downloads.example.com/red5pro-{version}.zip\n  sha256: \"{:064x}\"\nnotes: release {version}\n",
            i
        );
        std::fs::write(root.join(format!("releases/{version}.yaml")), text).unwrap();
    }
    for args in [
        vec!["init", "-q"],
        vec!["add", "-A"],
        vec![
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@example.com",
            "commit",
            "-q",
            "-m",
            "bench",
        ],
    ] {
        let status = Command::new("git")
            .args(&args)
            .current_dir(root)
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    }

    let date = time::macros::date!(2026 - 11 - 24);
    let mut best = (f64::MAX, f64::MAX, f64::MAX);
    let mut planned = 0;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let repo = Repo::open(root).unwrap();
        let snap = repo.snapshot("HEAD", date).unwrap();
        let validated = start.elapsed().as_secs_f64() * 1000.0;
        assert!(
            snap.catalog.problems.is_empty(),
            "{}",
            snap.catalog.problems
        );
        assert_eq!(snap.catalog.pipelines.len(), PIPELINES);
        assert_eq!(snap.catalog.releases.len(), RELEASES);

        let plan_start = Instant::now();
        planned = 0;
        for pipeline in &snap.catalog.pipelines {
            let release = desired_release(pipeline, &snap.catalog.releases).unwrap();
            let names = render(pipeline, release, date, &snap.commit).unwrap();
            let fleet = FleetState {
                group: pipeline.auto_scaling_group.clone(),
                desired_capacity: 2,
                running_version: Some("10.0.0".parse().unwrap()),
                images: vec![ImageRecord {
                    snapshot_gb: None,
                    id: "ami-0123456789abcdef0".into(),
                    version: "10.0.0".parse().unwrap(),
                    state: ImageState::Available,
                    baked_by: None,
                    region: None,
                }],
                ..FleetState::default()
            };
            let plan = plan_rollout(pipeline, release, &names, &fleet).unwrap();
            planned += plan.stages.len();
        }
        let planning = plan_start.elapsed().as_secs_f64() * 1000.0;
        let total = start.elapsed().as_secs_f64() * 1000.0;
        best = (
            best.0.min(validated),
            best.1.min(planning),
            best.2.min(total),
        );
    }
    println!(
        "validate + plan: {PIPELINES} pipelines x {RELEASES} releases from git, best of {ROUNDS} rounds"
    );
    println!("  read + validate: {:8.1} ms", best.0);
    println!("  plan:            {:8.1} ms ({planned} stages)", best.1);
    println!("  total:           {:8.1} ms (target < 100 ms)", best.2);
    println!(
        "  peak memory:     {:8.1} MB (VmHWM, target < 50 MB)",
        peak_rss_mb()
    );
}

/// The process's peak resident set size, from /proc/self/status.
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}
