//! The work folder's stages run from the command line: orbitmesh-pipeline keeps the bookkeeping
//! (fingerprints, `stage.json`, the temporary folder renamed into place); here Ctrl-C is held off
//! while a finished stage is moved into place, so no stage folder is left half replaced.

use std::path::Path;

use anyhow::Result;
use orbitmesh_pipeline::{Event, OnEvent, Stage, StageRun};
use serde_json::Value;

/// Runs `work` into `<dir>.tmp`, then replaces `dir` with it, unless `dir` is current; reports
/// the stage started and finished, or skipped, through `on_event`, which `work` is given to
/// report its own progress through. With `resume`, `work` goes on in what an interrupted run of
/// the same fingerprint left in `<dir>.tmp` (its checkpoints), else it starts in an empty one.
pub fn run_stage(
    dir: &Path,
    stage: Stage,
    fingerprint: &Value,
    outputs: &[&str],
    resume: bool,
    on_event: OnEvent<'_>,
    work: impl FnOnce(&Path, OnEvent<'_>) -> Result<Value>,
) -> Result<()> {
    let begin = if resume {
        StageRun::resume_or_begin
    } else {
        StageRun::begin
    };
    let Some(run) = begin(dir, stage.name(), fingerprint, outputs)? else {
        on_event(&Event::StageSkipped { stage });
        return Ok(());
    };
    on_event(&Event::StageStarted { stage });
    let details = work(run.path(), on_event)?;
    let seconds = crate::interrupt::finish_first(|| run.publish(details))?;
    on_event(&Event::StageFinished { stage, seconds });
    Ok(())
}
