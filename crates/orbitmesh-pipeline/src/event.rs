//! What a run reports as it goes: one [`Event`] type the stages emit through one callback
//! ([`OnEvent`]), which a front end renders (the command line's bars and lines; later a server's
//! stream of JSON) and answers with a [`Flow`]: go on, or stop at the next step.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::error::{PipelineError, Result};

/// The stages of a run, in their order. Serialised and shown as [`Stage::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The photo to the generator's input: mask, crop, scale (`prepare/`).
    Prepare,
    /// Frames around the object, generated or imported (`orbit/`).
    Orbit,
    /// The coarse mesh: the visual hull or the NeRF (`coarse/`).
    Coarse,
    /// The DMTet refinement, textured (`fine/`).
    Fine,
    /// The output mesh, simplified and written (no folder of its own).
    Export,
}

impl Stage {
    /// The stage's name: its folder in the work folder and the `stage` of its `stage.json`.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Prepare => "prepare",
            Stage::Orbit => "orbit",
            Stage::Coarse => "coarse",
            Stage::Fine => "fine",
            Stage::Export => "export",
        }
    }
}

/// The name, padded as the formatter asks (`{:<8}` lines stages up in a column).
impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// One thing a run reports. As JSON, the variant's name in snake case is the `event` key beside
/// its fields, e.g. `{"event":"step","stage":"coarse","step":3,"total":10,"loss":0.5,"psnr":null,
/// "detail":null}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The stage's settings or inputs changed (or it never finished): it runs now.
    StageStarted { stage: Stage },
    /// The stage's folder is current (same settings, same inputs): it does not run.
    StageSkipped { stage: Stage },
    /// The stage's folder is published, after `seconds` of work.
    StageFinished { stage: Stage, seconds: f64 },
    /// The stage goes on from a checkpoint in `from`, at `step`, `seconds` of work already done.
    Resumed {
        stage: Stage,
        step: u64,
        seconds: f64,
        from: PathBuf,
    },
    /// Step `step` of at most `total` done (a time budget may end the stage sooner), with the
    /// running loss and PSNR (dB) where the stage has them and what else it says of the step.
    Step {
        stage: Stage,
        step: u64,
        total: u64,
        loss: Option<f64>,
        psnr: Option<f64>,
        detail: Option<String>,
    },
    /// Frame `index` of the orbit written, at `path`: where it was written, in the stage's
    /// temporary folder while the stage runs (moved with the folder when it is published).
    Frame {
        stage: Stage,
        index: usize,
        path: PathBuf,
    },
    /// Something the user should know that does not stop the run.
    Warning {
        stage: Option<Stage>,
        message: String,
    },
}

/// A front end's answer to an event. The stages act on it at each [`Event::Step`]: a front end
/// that wants the run to end answers [`Flow::Stop`] from then on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on.
    Continue,
    /// End the stage at this step with [`PipelineError::Cancelled`], leaving the work folder as
    /// resumable as an interruption does: the stage's temporary folder is not published.
    Stop,
}

impl Flow {
    /// `Ok` to go on, [`PipelineError::Cancelled`] for [`Flow::Stop`], so a stage stops with `?`.
    pub fn proceed(self) -> Result<()> {
        match self {
            Flow::Continue => Ok(()),
            Flow::Stop => Err(PipelineError::Cancelled),
        }
    }
}

/// The callback the stages report through and pass down: `&mut |e| progress.on_event(e)`.
pub type OnEvent<'a> = &'a mut dyn FnMut(&Event) -> Flow;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_step_is_json_with_its_kind_beside_its_fields() {
        let step = Event::Step {
            stage: Stage::Coarse,
            step: 3,
            total: 10,
            loss: Some(0.5),
            psnr: None,
            detail: None,
        };
        assert_eq!(
            serde_json::to_string(&step).unwrap(),
            r#"{"event":"step","stage":"coarse","step":3,"total":10,"loss":0.5,"psnr":null,"detail":null}"#
        );
        let frame = Event::Frame {
            stage: Stage::Orbit,
            index: 2,
            path: PathBuf::from("work/orbit.tmp/002.png"),
        };
        assert_eq!(
            serde_json::to_value(&frame).unwrap(),
            json!({ "event": "frame", "stage": "orbit", "index": 2, "path": "work/orbit.tmp/002.png" })
        );
        let finished = Event::StageFinished {
            stage: Stage::Fine,
            seconds: 1.5,
        };
        assert_eq!(
            serde_json::to_value(&finished).unwrap(),
            json!({ "event": "stage_finished", "stage": "fine", "seconds": 1.5 })
        );
        let warning = Event::Warning {
            stage: None,
            message: "careful".into(),
        };
        assert_eq!(
            serde_json::to_value(&warning).unwrap(),
            json!({ "event": "warning", "stage": null, "message": "careful" })
        );
    }

    #[test]
    fn a_stage_is_written_as_its_folder_name() {
        for stage in [
            Stage::Prepare,
            Stage::Orbit,
            Stage::Coarse,
            Stage::Fine,
            Stage::Export,
        ] {
            assert_eq!(serde_json::to_value(stage).unwrap(), json!(stage.name()));
            assert_eq!(stage.to_string(), stage.name());
        }
        assert_eq!(format!("{:<8}|", Stage::Orbit), "orbit   |");
    }

    #[test]
    fn stop_ends_a_stage_with_cancelled() {
        assert!(Flow::Continue.proceed().is_ok());
        let err = Flow::Stop.proceed().unwrap_err();
        assert!(matches!(err, PipelineError::Cancelled), "{err:?}");
        assert_eq!(err.path(), None);
        assert_eq!(
            err.to_string(),
            "stopped on request; the work folder resumes from here"
        );
    }
}
