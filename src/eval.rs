//! `orbitmesh eval`: one prediction against one scan, or a CSV of pairs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use orbitmesh_bench::{PairEval, evaluate_pairs, read_pairs};
use orbitmesh_geom::io::write_atomic;
use orbitmesh_geom::{Align, EvalFrame, EvalOptions, Sampling};

use crate::input::{DeviceArg, UpArg, value_enum};

value_enum! {
    enum AlignArg => Align {
        None,
        Icp,
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum PredFrameArg {
    Gt,
    Object,
}

#[derive(Clone, Copy, ValueEnum)]
enum SamplingArg {
    /// Independent area-uniform draws, as trimesh and PyTorch3D sample (published figures)
    Uniform,
    /// Stratified area-uniform points: even coverage, less sampling noise
    Stratified,
    /// Points seen in depth renders of 16 views (hidden surfaces do not count), as SyncDreamer
    Visible,
}

#[derive(Args)]
#[command(
    after_help = "Both meshes are moved into the ground truth's normalised frame \
(bounding box centred, longest side 1) before measuring: the `gso` protocol of DESIGN.md. Meshes \
written by orbitmesh are already in that frame: give them with --pred-frame object.\n\
Meshes: .obj (+.mtl), .ply, .off (optionally .gz), or a GSO object folder."
)]
pub struct EvalArgs {
    /// The mesh to measure
    #[arg(required_unless_present = "batch")]
    pred: Option<PathBuf>,
    /// The ground-truth scan
    #[arg(required_unless_present = "batch")]
    gt: Option<PathBuf>,
    /// A CSV of `pred,gt` rows (paths relative to the CSV); writes one CSV of results
    #[arg(long, conflicts_with_all = ["pred", "gt", "json"])]
    batch: Option<PathBuf>,
    /// Where --batch writes its results [default: <PAIRS>-results.csv]
    #[arg(long, requires = "batch")]
    out: Option<PathBuf>,
    /// Surface samples on each mesh
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    points: u64,
    /// Sampling seed (the prediction uses SEED, the ground truth SEED+1)
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// How surface points are placed
    #[arg(long, value_enum, default_value = "uniform")]
    sampling: SamplingArg,
    /// Rasterizer for --sampling visible
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
    /// Align the prediction to the ground truth first (rigid + uniform scale ICP); metrics are
    /// reported before and after
    #[arg(long, value_enum, default_value = "none")]
    align: AlignArg,
    /// Grid cells along the longest side for volume IoU (0 skips IoU)
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(0..=1024))]
    iou_cells: u64,
    /// Up axis of the prediction file
    #[arg(long, value_enum, default_value = "z")]
    pred_up: UpArg,
    /// Up axis of the ground-truth file (GSO scans are Z up)
    #[arg(long, value_enum, default_value = "z")]
    gt_up: UpArg,
    /// gt: PRED is in GT's file frame (both get GT's normalisation); object: PRED is already in
    /// the normalised object frame, as orbitmesh's stages write (only GT is normalised)
    #[arg(long, value_enum, default_value = "gt")]
    pred_frame: PredFrameArg,
    /// Measure the meshes as they are, without moving them into the ground truth's frame
    #[arg(long)]
    no_normalise: bool,
    /// Also write the full report as JSON
    #[arg(long)]
    json: Option<PathBuf>,
}

impl EvalArgs {
    fn pair_eval(&self) -> PairEval {
        let options = EvalOptions {
            points: self.points as usize,
            seed: self.seed,
            sampling: match self.sampling {
                SamplingArg::Stratified => Sampling::Stratified,
                SamplingArg::Uniform | SamplingArg::Visible => Sampling::Independent,
            },
            iou_cells: (self.iou_cells > 0).then_some(self.iou_cells as usize),
            align: self.align.into(),
            frame: match (self.no_normalise, self.pred_frame) {
                (true, _) => EvalFrame::AsGiven,
                (false, PredFrameArg::Gt) => EvalFrame::SharedRaw,
                (false, PredFrameArg::Object) => EvalFrame::PredictionNormalised,
            },
            ..Default::default()
        };
        PairEval {
            pred_up: self.pred_up.into(),
            gt_up: self.gt_up.into(),
            options,
            visible: matches!(self.sampling, SamplingArg::Visible).then_some(self.device.into()),
        }
    }
}

fn warn(message: &str) {
    eprintln!("warning: {message}");
}

pub fn run(args: EvalArgs) -> Result<ExitCode> {
    if let Some(pairs) = &args.batch {
        return run_batch(pairs, &args);
    }
    let (Some(pred), Some(gt)) = (&args.pred, &args.gt) else {
        bail!("eval needs PRED and GT, or --batch PAIRS.csv");
    };
    let report = args.pair_eval().evaluate(pred, gt, &warn)?;
    println!("pred  {}", pred.display());
    println!("gt    {}", gt.display());
    print!("{}", report.table());
    if let Some(json) = &args.json {
        let body = serde_json::json!({
            "pred": pred, "gt": gt, "protocol": "gso", "report": report,
        });
        write_atomic(json, |w| {
            serde_json::to_writer_pretty(&mut *w, &body)?;
            writeln!(w)
        })?;
    }
    Ok(ExitCode::SUCCESS)
}

fn run_batch(pairs_path: &Path, args: &EvalArgs) -> Result<ExitCode> {
    let pairs = read_pairs(pairs_path)?;
    let out = args.out.clone().unwrap_or_else(|| {
        let stem = pairs_path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "pairs".into());
        pairs_path.with_file_name(format!("{stem}-results.csv"))
    });
    let bar = ProgressBar::new(pairs.len() as u64).with_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} pairs  {elapsed_precise} (eta {eta})  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let failed = evaluate_pairs(
        &pairs,
        &args.pair_eval(),
        &out,
        &|w| bar.suspend(|| warn(w)),
        &|pred, error| {
            if let Some(message) = error {
                bar.suspend(|| eprintln!("error: {message}"));
            }
            bar.set_message(pred.display().to_string());
            bar.inc(1);
        },
    )?;
    bar.finish_and_clear();
    println!(
        "{} pairs evaluated, {} failed; results in {}",
        pairs.len() - failed,
        failed,
        out.display()
    );
    if failed > 0 {
        bail!(
            "{failed} of {} pairs failed (their rows in {} say why)",
            pairs.len(),
            out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
