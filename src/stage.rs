//! The work folder's stages run from the command line: orbitmesh-pipeline keeps the bookkeeping
//! (fingerprints, `stage.json`, the temporary folder renamed into place); here Ctrl-C is held off
//! while a finished stage is moved into place, so no stage folder is left half replaced.

use std::path::Path;

use anyhow::Result;
use orbitmesh_pipeline::StageRun;
use serde_json::Value;

/// Runs `work` into `<dir>.tmp`, then replaces `dir` with it, unless `dir` is current. Returns
/// the seconds spent, or `None` when skipped.
pub fn run_stage(
    dir: &Path,
    stage: &str,
    fingerprint: &Value,
    outputs: &[&str],
    work: impl FnOnce(&Path) -> Result<Value>,
) -> Result<Option<f64>> {
    let Some(run) = StageRun::begin(dir, stage, fingerprint, outputs)? else {
        return Ok(None);
    };
    let details = work(run.path())?;
    let seconds = crate::interrupt::finish_first(|| run.publish(details))?;
    Ok(Some(seconds))
}
