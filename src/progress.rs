//! The command line's one view of the pipeline's events ([`Event`]). On a terminal (standard error)
//! each running stage is a line of its own: a spinner from its start, a bar from its first step.
//! Elsewhere (a log file, CI, a benchmark script) plain lines ([`line`]): step lines thinned out
//! so that a log stays short, and no line for a stage's start, so that a stage that fails on bad
//! input leaves the one `error:` line the command line promises.
//!
//! Either way a stage's end, skipped or finished, is one line on standard output in the column
//! `mesh` has always printed (`coarse   done in 12.34 s`), which scripts and tests read; warnings
//! (`warning: …`) and the rest go to standard error.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use orbitmesh_pipeline::{Event, Flow, Stage};

/// Shows a run's events; see the module's documentation. Dropped, it clears its bars.
pub struct Progress {
    view: View,
}

enum View {
    /// Standard error is a terminal: a spinner or bar per running stage.
    Bars {
        multi: MultiProgress,
        bars: Vec<(Stage, ProgressBar)>,
    },
    /// Plain lines, step lines at most as often as [`StepLines`] lets them through.
    Lines(StepLines),
}

impl Progress {
    /// Bars where standard error is a terminal, plain lines elsewhere.
    pub fn new() -> Self {
        let view = if std::io::stderr().is_terminal() {
            View::Bars {
                multi: MultiProgress::new(),
                bars: Vec::new(),
            }
        } else {
            View::Lines(StepLines::default())
        };
        Progress { view }
    }

    /// Shows `event`. The command line never stops a run this way (Ctrl-C ends it, see
    /// `interrupt.rs`), so the answer is always to go on.
    pub fn on_event(&mut self, event: &Event) -> Flow {
        match &mut self.view {
            View::Lines(steps) => {
                let due = match event {
                    Event::Step {
                        stage, step, total, ..
                    } => steps.due(*stage, *step, *total, Instant::now()),
                    _ => true,
                };
                if due && let Some(text) = line(event) {
                    print(event, &text);
                }
            }
            View::Bars { multi, bars } => match event {
                Event::StageStarted { stage } => {
                    let bar = ProgressBar::new_spinner()
                        .with_style(style("{prefix:8} {spinner}  [{elapsed_precise}]"))
                        .with_prefix(stage.name());
                    let bar = multi.add(bar);
                    bar.enable_steady_tick(Duration::from_millis(100));
                    bars.push((*stage, bar));
                }
                Event::Step {
                    stage,
                    step,
                    total,
                    loss,
                    psnr,
                    detail,
                } => {
                    let found = bars.iter().position(|(s, _)| s == stage);
                    let at = match found {
                        Some(at) => at,
                        // A stage run on its own (`orbitmesh nerf`) reports no start.
                        None => {
                            let bar = multi.add(ProgressBar::no_length().with_prefix(stage.name()));
                            bars.push((*stage, bar));
                            bars.len() - 1
                        }
                    };
                    let bar = &bars[at].1;
                    if bar.length() == Some(*total) {
                        bar.set_position(*step);
                    } else {
                        // The spinner becomes a bar at the stage's first step (a resumed stage's
                        // first step is not its first: the ETA counts from here).
                        bar.disable_steady_tick();
                        bar.set_style(style(
                            "{prefix:8} {bar:30} {pos}/{len}  {msg}  [{elapsed_precise}, ETA {eta}]",
                        ));
                        bar.set_length(*total);
                        bar.set_position(*step);
                        bar.reset_eta();
                    }
                    bar.set_message(step_text(*loss, *psnr, detail.as_deref()));
                }
                Event::Frame { .. } => {}
                _ => {
                    if let Event::StageSkipped { stage } | Event::StageFinished { stage, .. } =
                        event
                    {
                        bars.retain(|(s, bar)| {
                            if s == stage {
                                bar.finish_and_clear();
                                multi.remove(bar);
                            }
                            s != stage
                        });
                    }
                    if let Some(text) = line(event) {
                        multi.suspend(|| print(event, &text));
                    }
                }
            },
        }
        Flow::Continue
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let View::Bars { bars, .. } = &self.view {
            for (_, bar) in bars {
                bar.finish_and_clear();
            }
        }
    }
}

/// A bar style from a template (the templates here are fixed and valid).
fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// Writes an event's line: a stage's end on standard output, the rest on standard error.
fn print(event: &Event, text: &str) {
    if matches!(
        event,
        Event::StageSkipped { .. } | Event::StageFinished { .. }
    ) {
        println!("{text}");
    } else {
        eprintln!("{text}");
    }
}

/// An event as one plain line, or `None` for one that has none: a stage's start (its end says
/// it ran) and a frame written.
fn line(event: &Event) -> Option<String> {
    Some(match event {
        Event::StageStarted { .. } | Event::Frame { .. } => return None,
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
            let text = step_text(*loss, *psnr, detail.as_deref());
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
fn step_text(loss: Option<f64>, psnr: Option<f64>, detail: Option<&str>) -> String {
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

/// Which step lines a log gets: a stage's first step, then each step that reaches the next tenth
/// of its total (its last step among them), or that comes [`StepLines::EVERY`] after the last line
/// (a time budget may end a stage long before its step total).
#[derive(Default)]
struct StepLines {
    /// The stage of the last step line, the tenth it reached and when it was written.
    last: Option<(Stage, u64, Instant)>,
}

impl StepLines {
    const EVERY: Duration = Duration::from_secs(30);

    /// Whether step `step` of `total` of `stage` gets a line at `now`; if so, remembers it.
    fn due(&mut self, stage: Stage, step: u64, total: u64, now: Instant) -> bool {
        let tenth = (step.min(total) * 10).checked_div(total).unwrap_or(0);
        let due = match self.last {
            Some((last, last_tenth, at)) if last == stage => {
                tenth > last_tenth || now.duration_since(at) >= Self::EVERY
            }
            _ => true,
        };
        if due {
            self.last = Some((stage, tenth, now));
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn each_event_is_one_plain_line() {
        let line_of = |event: Event| line(&event);
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
    fn a_log_gets_a_step_line_per_tenth_or_per_half_minute() {
        let start = Instant::now();
        let mut lines = StepLines::default();
        let due: Vec<u64> = (1..=100)
            .filter(|&step| lines.due(Stage::Fine, step, 100, start))
            .collect();
        assert_eq!(due, [1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);

        // Few steps: every one.
        let mut lines = StepLines::default();
        assert!((1..=7).all(|step| lines.due(Stage::Orbit, step, 7, start)));

        // Within one tenth, a line once half a minute has passed; a new stage starts afresh.
        let mut lines = StepLines::default();
        assert!(lines.due(Stage::Coarse, 1, 3000, start));
        assert!(!lines.due(Stage::Coarse, 2, 3000, start + Duration::from_secs(29)));
        assert!(lines.due(Stage::Coarse, 3, 3000, start + Duration::from_secs(31)));
        assert!(!lines.due(Stage::Coarse, 4, 3000, start + Duration::from_secs(32)));
        assert!(lines.due(Stage::Fine, 1, 3000, start + Duration::from_secs(32)));
        // No total: only the first line and then by time.
        let mut lines = StepLines::default();
        assert!(lines.due(Stage::Fine, 1, 0, start));
        assert!(!lines.due(Stage::Fine, 2, 0, start));
    }
}
