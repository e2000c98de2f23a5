//! apply-update: install the release on the builder with the rendered update script.
//!
//! Flow: skip when an image for the release exists, or when the builder is tagged as
//! updated already. Else follow the release's command that an earlier run sent to this
//! builder (SSM lists it by instance; the comment names pipeline and version), or send the
//! script with AWS-RunShellScript (execution timeout from the pipeline, delivery timeout
//! set by the adapter); follow the command to its end and stream its output lines as
//! events; on success tag the builder `red5-rollout:updated`.
//!
//! Guarantees: the install script is sent at most once per builder, also when a run died
//! while it ran (two installs never race in `/usr/local/red5pro`); a builder is updated at
//! most once per successful command. Fails with the
//! command's status, exit code and the last lines of its output; SSM keeps only the first
//! 24,000 characters of output, and the error says so when that limit was reached.

use super::context::{Baked, Context, StageError, Visibility};
use crate::cloud::{CommandResult, ErrorClass, TAG_UPDATED};
use crate::events::{Event, Produced, StageOutcome};
use crate::observe::tags;
use crate::plan::Stage;
use crate::priors::Step;
use crate::wait::Poll;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

const STAGE: Stage = Stage::ApplyUpdate;
/// How many lines of output a failure shows.
const TAIL_LINES: usize = 20;

pub async fn run(ctx: &Context, baked: &mut Baked) -> Result<StageOutcome, StageError> {
    if let Some(image) = ctx.release_images(STAGE).await?.first() {
        baked.image = Some(image.id.clone());
        return Ok(StageOutcome::Skipped {
            reason: format!("{} for {} exists", image.id, ctx.release.version),
        });
    }
    let builder = match ctx.builder_for(STAGE, baked).await? {
        Some(b) => b,
        None => {
            return Err(StageError::Precondition {
                stage: STAGE,
                message: format!(
                    "no builder for {} is running to update",
                    ctx.release.version
                ),
            });
        }
    };
    baked.builder = Some(builder.id.clone());
    if builder.tags.get(TAG_UPDATED).is_some_and(|v| v == "true") {
        return Ok(StageOutcome::Skipped {
            reason: format!(
                "builder {} already runs {}",
                builder.id, ctx.release.version
            ),
        });
    }
    if ctx.is_interrupted() {
        return Err(StageError::Interrupted { stage: STAGE });
    }
    let cloud = ctx.cloud.as_ref();
    let timeout = ctx.bake(STAGE)?.1.execution_timeout;
    let Some(script) = ctx.names.update_script.as_deref() else {
        return Err(StageError::Precondition {
            stage: STAGE,
            message: "the update script was not rendered".into(),
        });
    };
    let release_comment = format!(
        "red5-rollout {} {} ",
        ctx.pipeline.name, ctx.release.version
    );
    let earlier = cloud
        .commands_on(&builder.id)
        .await
        .map_err(StageError::cloud(STAGE))?
        .into_iter()
        .find(|c| c.comment.starts_with(&release_comment));
    // A command this run sends is timed from here; one it follows is not.
    let mut asked = None;
    let command = match earlier {
        Some(earlier) => {
            ctx.events.emit(Event::StageProgress {
                pipeline: ctx.pipeline.name.clone(),
                stage: STAGE,
                message: format!(
                    "following command {} that an earlier run sent to {} ({}); it is not sent again",
                    earlier.id, builder.id, earlier.status
                ),
                elapsed: Duration::ZERO,
                budget: timeout,
            });
            earlier.id
        }
        None => {
            asked = Some(Instant::now());
            cloud
                .send_script(
                    &builder.id,
                    script,
                    timeout.as_secs(),
                    &format!("{release_comment}run {}", ctx.run_id),
                )
                .await
                .map_err(StageError::cloud(STAGE))?
        }
    };
    let shown = Mutex::new(0usize);
    let result: CommandResult = ctx
        .wait_expecting(
            STAGE,
            &format!("command {command} on {}", builder.id),
            timeout + Duration::from_secs(300),
            Visibility::Settled,
            asked.and_then(|_| ctx.priors.expected(Step::Update)),
            || async {
                let result = match cloud.command_result(&command, &builder.id).await {
                    Ok(r) => r,
                    Err(e) if e.is(ErrorClass::NotFound) => {
                        return Ok(Poll::Pending("not visible yet".into()));
                    }
                    Err(e) => return Err(StageError::cloud(STAGE)(e)),
                };
                let lines: Vec<&str> = result.stdout.lines().collect();
                let mut shown = shown.lock().expect("output counter");
                for line in lines.iter().skip(*shown) {
                    ctx.events.emit(Event::StageOutput {
                        pipeline: ctx.pipeline.name.clone(),
                        stage: STAGE,
                        line: line.to_string(),
                    });
                }
                *shown = (*shown).max(lines.len());
                if result.is_finished() {
                    Ok(Poll::Ready(result.clone()))
                } else {
                    Ok(Poll::Pending(result.status.to_string()))
                }
            },
        )
        .await?;
    if let Some(asked) = asked {
        baked.timings.record(Step::Update, asked.elapsed());
    }
    if !result.is_success() {
        let mut tail: Vec<String> = result
            .stdout
            .lines()
            .chain(result.stderr.lines())
            .map(str::to_string)
            .collect();
        let cut = tail.len().saturating_sub(TAIL_LINES);
        tail.drain(..cut);
        return Err(StageError::UpdateFailed {
            instance: builder.id.clone(),
            status: result.status.to_string(),
            exit_code: result.response_code,
            truncated: result.is_truncated(),
            tail,
        });
    }
    cloud
        .tag_instance(&builder.id, &tags(&[(TAG_UPDATED, "true")]))
        .await
        .map_err(StageError::cloud(STAGE))?;
    Ok(StageOutcome::done(Produced {
        builder: Some(builder.id.clone()),
        command: Some(command.clone()),
        ..Produced::default()
    }))
}
