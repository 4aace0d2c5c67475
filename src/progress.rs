//! The command line's one view of the pipeline's events ([`Event`]). On a terminal (standard error)
//! each running stage is a line of its own: a spinner from its start, a bar from its first step.
//! Elsewhere (a log file, CI, a benchmark script) plain lines ([`Event::line`]): step lines thinned out
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
                if due && let Some(text) = event.line() {
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
                    bar.set_message(Event::step_text(*loss, *psnr, detail.as_deref()));
                }
                Event::Frame { .. } | Event::Publishing { .. } => {}
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
                    if let Some(text) = event.line() {
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

/// Which step lines a log gets: every step of a stage of at most [`StepLines::ALL_UP_TO`] steps
/// (an orbit's parts, each a model call a benchmark times); else a stage's first step, then each
/// step that reaches the next tenth of its total (its last step among them), or that comes
/// [`StepLines::EVERY`] after the last line (a time budget may end a stage long before its step
/// total).
#[derive(Default)]
struct StepLines {
    /// The stage of the last step line, the tenth it reached and when it was written.
    last: Option<(Stage, u64, Instant)>,
}

impl StepLines {
    const EVERY: Duration = Duration::from_secs(30);
    const ALL_UP_TO: u64 = 50;

    /// Whether step `step` of `total` of `stage` gets a line at `now`; if so, remembers it.
    fn due(&mut self, stage: Stage, step: u64, total: u64, now: Instant) -> bool {
        let tenth = (step.min(total) * 10).checked_div(total).unwrap_or(0);
        let due = (1..=Self::ALL_UP_TO).contains(&total)
            || match self.last {
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

    #[test]
    fn a_log_gets_a_step_line_per_tenth_or_per_half_minute() {
        let start = Instant::now();
        let mut lines = StepLines::default();
        let due: Vec<u64> = (1..=100)
            .filter(|&step| lines.due(Stage::Fine, step, 100, start))
            .collect();
        assert_eq!(due, [1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);

        // Few steps (an orbit of 21 frames has 25 parts): every one.
        let mut lines = StepLines::default();
        assert!((1..=25).all(|step| lines.due(Stage::Orbit, step, 25, start)));

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
