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
    /// The stage's work is done and its results are being moved into place (its folder renamed,
    /// the output file written): a front end that ends the process at once on an interruption
    /// waits for the next event, so that nothing is left half replaced.
    Publishing { stage: Stage },
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

impl Event {
    /// The event as one plain line for people (a log, a terminal without bars), or `None` for one
    /// that has none: a stage's start (its end says
    /// it ran), a frame written and a stage being published.
    pub fn line(&self) -> Option<String> {
        Some(match self {
            Event::StageStarted { .. } | Event::Frame { .. } | Event::Publishing { .. } => {
                return None;
            }
            Event::StageSkipped { stage } => format!("{stage:<8} up to date, skipped"),
            Event::StageFinished { stage, seconds } => format!("{stage:<8} done in {seconds:.2} s"),
            Event::Resumed {
                step,
                seconds,
                from,
                ..
            } => format!(
                "resuming from step {step} ({seconds:.0} s trained) in {}",
                from.display()
            ),
            Event::Step {
                stage,
                step,
                total,
                loss,
                psnr,
                detail,
            } => {
                let text = Event::step_text(*loss, *psnr, detail.as_deref());
                if text.is_empty() {
                    format!("{stage} {step}/{total}")
                } else {
                    format!("{stage} {step}/{total}: {text}")
                }
            }
            Event::Warning { message, .. } => format!("warning: {message}"),
        })
    }

    /// What a step says besides its count: `loss 0.01234, PSNR 19.1 dB, …`, each part where given.
    pub fn step_text(loss: Option<f64>, psnr: Option<f64>, detail: Option<&str>) -> String {
        let parts: Vec<String> = [
            loss.map(|l| format!("loss {l:.5}")),
            psnr.map(|p| format!("PSNR {p:.1} dB")),
            detail.map(str::to_string),
        ]
        .into_iter()
        .flatten()
        .collect();
        parts.join(", ")
    }
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
    fn each_event_is_one_plain_line() {
        let line_of = |event: Event| event.line();
        assert_eq!(
            line_of(Event::StageSkipped {
                stage: Stage::Prepare
            })
            .unwrap(),
            "prepare  up to date, skipped"
        );
        assert_eq!(
            line_of(Event::StageFinished {
                stage: Stage::Coarse,
                seconds: 12.3456,
            })
            .unwrap(),
            "coarse   done in 12.35 s"
        );
        assert_eq!(line_of(Event::StageStarted { stage: Stage::Fine }), None);
        assert_eq!(
            line_of(Event::Step {
                stage: Stage::Coarse,
                step: 300,
                total: 1000,
                loss: Some(0.0123456),
                psnr: Some(19.08),
                detail: Some("4096 rays".into()),
            })
            .unwrap(),
            "coarse 300/1000: loss 0.01235, PSNR 19.1 dB, 4096 rays"
        );
        // The shape benchmark scripts grep for each orbit part's time.
        assert_eq!(
            line_of(Event::Step {
                stage: Stage::Orbit,
                step: 3,
                total: 7,
                loss: None,
                psnr: None,
                detail: Some("UNet step 1/1 in 12.50 s".into()),
            })
            .unwrap(),
            "orbit 3/7: UNet step 1/1 in 12.50 s"
        );
        assert_eq!(
            line_of(Event::Step {
                stage: Stage::Fine,
                step: 5,
                total: 10,
                loss: None,
                psnr: None,
                detail: None,
            })
            .unwrap(),
            "fine 5/10"
        );
        assert_eq!(
            line_of(Event::Resumed {
                stage: Stage::Coarse,
                step: 60,
                seconds: 12.4,
                from: PathBuf::from("out/checkpoint"),
            })
            .unwrap(),
            "resuming from step 60 (12 s trained) in out/checkpoint"
        );
        assert_eq!(
            line_of(Event::Warning {
                stage: Some(Stage::Orbit),
                message: "SV3D on the CPU takes hours".into(),
            })
            .unwrap(),
            "warning: SV3D on the CPU takes hours"
        );
        assert_eq!(
            line_of(Event::Frame {
                stage: Stage::Orbit,
                index: 0,
                path: PathBuf::from("orbit.tmp/000.png"),
            }),
            None
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
