//! `orbitmesh eval`: one prediction against one scan, or a CSV of pairs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use orbitmesh_geom::eval::{Alignment, Metrics};
use orbitmesh_geom::io::write_atomic;
use orbitmesh_geom::{
    Align, EvalFrame, EvalOptions, EvalReport, Sampling, evaluate_with, sample_surface,
};
use orbitmesh_render::{DeviceChoice, open_rasterizer, visible::sample_visible};

use crate::input::{DeviceArg, UpArg, load_mesh};

#[derive(Clone, Copy, ValueEnum)]
enum AlignArg {
    None,
    Icp,
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
    fn options(&self) -> EvalOptions {
        EvalOptions {
            points: self.points as usize,
            seed: self.seed,
            sampling: match self.sampling {
                SamplingArg::Stratified => Sampling::Stratified,
                SamplingArg::Uniform | SamplingArg::Visible => Sampling::Independent,
            },
            iou_cells: (self.iou_cells > 0).then_some(self.iou_cells as usize),
            align: match self.align {
                AlignArg::None => Align::None,
                AlignArg::Icp => Align::Icp,
            },
            frame: match (self.no_normalise, self.pred_frame) {
                (true, _) => EvalFrame::AsGiven,
                (false, PredFrameArg::Gt) => EvalFrame::SharedRaw,
                (false, PredFrameArg::Object) => EvalFrame::PredictionNormalised,
            },
            ..Default::default()
        }
    }
}

fn evaluate_pair(pred: &Path, gt: &Path, args: &EvalArgs) -> Result<EvalReport> {
    let (pred, gt) = rayon::join(
        || load_mesh(pred, args.pred_up),
        || load_mesh(gt, args.gt_up),
    );
    let (pred, gt, opts) = (pred?, gt?, args.options());
    if let SamplingArg::Visible = args.sampling {
        let rasterizer = open_rasterizer(DeviceChoice::from(args.device))?;
        return Ok(evaluate_with(&pred, &gt, &opts, |mesh, count, seed| {
            sample_visible(mesh, count, seed, &rasterizer)
        })?);
    }
    evaluate_with(&pred, &gt, &opts, |mesh, count, seed| {
        Ok(sample_surface(mesh, count, seed, opts.sampling))
    })
}

pub fn run(args: EvalArgs) -> Result<ExitCode> {
    if let Some(pairs) = &args.batch {
        return run_batch(pairs, &args);
    }
    let (Some(pred), Some(gt)) = (&args.pred, &args.gt) else {
        bail!("eval needs PRED and GT, or --batch PAIRS.csv");
    };
    let report = evaluate_pair(pred, gt, &args)?;
    print_table(pred, gt, &report);
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

fn rows(m: &Metrics) -> Vec<(String, String)> {
    let mut r = vec![
        ("chamfer".into(), format!("{:.6}", m.points.chamfer)),
        (
            "chamfer_l2_squared".into(),
            format!("{:.3e}", m.points.chamfer_l2_squared),
        ),
    ];
    for f in &m.points.fscores {
        r.push((
            format!("fscore@{}", f.tau),
            format!(
                "{:.4}  (precision {:.4}, recall {:.4})",
                f.fscore, f.precision, f.recall
            ),
        ));
    }
    r.push((
        "volume_iou".into(),
        m.volume_iou.map_or("skipped".into(), |v| format!("{v:.4}")),
    ));
    r.push((
        "normal_consistency".into(),
        format!("{:.4}", m.points.normal_consistency),
    ));
    r
}

fn print_table(pred: &Path, gt: &Path, report: &EvalReport) {
    println!("pred  {}", pred.display());
    println!("gt    {}", gt.display());
    println!(
        "{} points per mesh, seed {}, gso protocol (ground truth's normalised frame)",
        report.points, report.seed
    );
    let before = rows(&report.metrics);
    match &report.aligned {
        None => {
            for (k, v) in before {
                println!("  {k:<20} {v}");
            }
        }
        Some(Alignment {
            metrics,
            scale,
            iterations,
            rms,
            ..
        }) => {
            println!("  {:<20} {:<44} after ICP", "", "as given");
            for ((k, v), (_, a)) in before.into_iter().zip(rows(metrics)) {
                println!("  {k:<20} {v:<44} {a}");
            }
            println!("  ICP: scale {scale:.4}, {iterations} iterations, rms {rms:.5}");
        }
    }
    let s = &report.seconds;
    println!(
        "  seconds: sample {:.3}, nearest neighbours {:.3}, volume IoU {:.3}, align {:.3}",
        s.sample, s.query, s.iou, s.align
    );
}

/// Reads `pred,gt` rows; a first row of exactly `pred,gt` is a header. Paths are relative to the
/// CSV's folder.
fn read_pairs(csv_path: &Path) -> Result<Vec<(PathBuf, PathBuf)>> {
    let base = csv_path.parent().unwrap_or(Path::new("."));
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_path(csv_path)
        .with_context(|| format!("{}: cannot read", csv_path.display()))?;
    let mut pairs = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("{}: row {}", csv_path.display(), i + 1))?;
        if i == 0 && record.len() == 2 && &record[0] == "pred" && &record[1] == "gt" {
            continue;
        }
        if record.len() != 2 {
            bail!(
                "{}: row {} has {} fields, expected pred,gt",
                csv_path.display(),
                i + 1,
                record.len()
            );
        }
        pairs.push((base.join(&record[0]), base.join(&record[1])));
    }
    if pairs.is_empty() {
        bail!("{}: no pred,gt rows", csv_path.display());
    }
    Ok(pairs)
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
    let taus = args.options().taus;
    let metric_columns = |prefix: &str| {
        let mut c = vec![
            format!("{prefix}chamfer"),
            format!("{prefix}chamfer_l2_squared"),
        ];
        c.extend(taus.iter().map(|t| format!("{prefix}fscore@{t}")));
        c.extend([
            format!("{prefix}volume_iou"),
            format!("{prefix}normal_consistency"),
        ]);
        c
    };
    let mut header = vec!["pred".to_string(), "gt".to_string()];
    header.extend(metric_columns(""));
    if matches!(args.align, AlignArg::Icp) {
        header.extend(metric_columns("icp_"));
        header.push("icp_scale".into());
    }
    header.push("error".into());

    let bar = ProgressBar::new(pairs.len() as u64).with_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} pairs  {elapsed_precise} (eta {eta})  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut table = csv::Writer::from_writer(Vec::new());
    table.write_record(&header)?;
    let mut failed = 0;
    let values = |m: &Metrics| {
        let mut v = vec![
            m.points.chamfer.to_string(),
            m.points.chamfer_l2_squared.to_string(),
        ];
        v.extend(m.points.fscores.iter().map(|f| f.fscore.to_string()));
        v.push(m.volume_iou.map_or(String::new(), |x| x.to_string()));
        v.push(m.points.normal_consistency.to_string());
        v
    };
    for (pred, gt) in &pairs {
        bar.set_message(pred.display().to_string());
        let mut row = vec![pred.display().to_string(), gt.display().to_string()];
        match evaluate_pair(pred, gt, args) {
            Ok(report) => {
                row.extend(values(&report.metrics));
                if let Some(a) = &report.aligned {
                    row.extend(values(&a.metrics));
                    row.push(a.scale.to_string());
                }
                row.resize(header.len() - 1, String::new());
                row.push(String::new());
            }
            Err(e) => {
                failed += 1;
                let message = format!("{e:#}").replace('\n', " ");
                bar.suspend(|| eprintln!("error: {message}"));
                row.resize(header.len() - 1, String::new());
                row.push(message);
            }
        }
        table.write_record(&row)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let bytes = table.into_inner().context("writing the results table")?;
    write_atomic(&out, |w| w.write_all(&bytes))?;
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
