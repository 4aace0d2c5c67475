//! `orbitmesh bench`: the benchmark protocol of DESIGN.md over a GSO-layout dataset
//! (`orbitmesh_bench`), one folder per object, resumable, with a report.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use orbitmesh_bench::{BenchConfig, BenchEvent, Summary, merge, run_bench};

use crate::input::{PlanArgs, UpArg};
use crate::orbit::{ProfileArg, inflate_profile};

#[derive(Args)]
#[command(
    after_help = "Per object: normalise the scan, render the conditioning view (576², \
white, elevation 10°, azimuth 0), run the pipeline (prepare, the inflate orbit, the visual hull), \
evaluate with the gso protocol. --oracle replaces the generated orbit with 21 renders of the scan \
itself, measuring the 3D stages alone. Without --oracle the mesh is measured where the \
conditioning camera sees the object (prepare's crop and zoom undone, `mesh --frame input`), which \
is the scan's normalised frame. Objects with a metrics.json are skipped on rerun; a failing \
object is recorded with its error and the bench goes on."
)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: Option<BenchCommand>,
    /// A GSO-layout folder: <name>/meshes/model.obj (or <name>/model.obj) per object
    #[arg(required = true)]
    dataset: Option<PathBuf>,
    /// Output folder: one folder per object, results.csv, summary.json, report.md, chamfer.png
    #[arg(long, required = true)]
    out: Option<PathBuf>,
    /// Run only shard I of N (0-based; objects sorted by name, every N-th from the I-th), to
    /// split a dataset over machines; `orbitmesh bench merge` joins the shards' outputs
    #[arg(long, value_parser = parse_shard)]
    shard: Option<(usize, usize)>,
    /// Use renders of the scan as the orbit (the 3D stages alone)
    #[arg(long)]
    oracle: bool,
    /// Depth profile of the inflate orbit's proxy [default: revolved]
    #[arg(long, value_enum, conflicts_with = "oracle")]
    profile: Option<ProfileArg>,
    /// Up axis of the scans (GSO: z)
    #[arg(long, value_enum, default_value = "z")]
    up: UpArg,
    #[command(flatten)]
    plan: PlanArgs,
    /// Surface samples per mesh for the metrics
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1000..))]
    points: u64,
    /// Objects benchmarked at once; the cores are shared out among them
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=256))]
    jobs: u64,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Join the outputs of `bench --shard` runs into one report
    Merge {
        /// The shards' output folders
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Where the merged report goes
        #[arg(long)]
        out: PathBuf,
    },
}

fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let parsed = s
        .split_once('/')
        .and_then(|(i, n)| Some((i.parse::<usize>().ok()?, n.parse::<usize>().ok()?)));
    match parsed {
        Some((i, n)) if n > 0 && i < n => Ok((i, n)),
        _ => Err(format!("{s:?}: expected I/N with 0 <= I < N, e.g. 0/4")),
    }
}

/// One object's line of the report: its metrics (COLUMNS and seconds), or why it failed.
pub fn run(args: BenchArgs) -> Result<ExitCode> {
    if let Some(BenchCommand::Merge { dirs, out }) = &args.command {
        print_summary(&merge(dirs, out)?);
        return Ok(ExitCode::SUCCESS);
    }
    let (Some(dataset), Some(out)) = (&args.dataset, &args.out) else {
        bail!("bench needs DATASET and --out");
    };
    let config = BenchConfig {
        preset: args.plan.preset(),
        overrides: args.plan.overrides(None),
        oracle: args.oracle,
        profile: inflate_profile(args.profile),
        up: args.up.into(),
        points: args.points as usize,
        device: args.plan.device.into(),
        jobs: args.jobs as usize,
        shard: args.shard,
    };
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "bench {bar:30} {pos}/{len} objects  {elapsed_precise} (eta {eta})  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let summary = run_bench(dataset, out, &config, &|event| match event {
        BenchEvent::Objects(n) => bar.set_length(n as u64),
        BenchEvent::Started(name) => bar.set_message(name.to_string()),
        BenchEvent::Finished(row) => {
            if let Err(e) = &row.values {
                bar.suspend(|| eprintln!("error: {}: {e}", row.name));
            }
            bar.inc(1);
        }
        BenchEvent::Warning { object, message } => {
            bar.suspend(|| eprintln!("warning: {object}: {message}"))
        }
    })?;
    bar.finish_and_clear();
    print_summary(&summary);
    Ok(ExitCode::SUCCESS)
}

fn print_summary(s: &Summary) {
    println!(
        "{} objects, {} failed; mean Chamfer {:.4}, mean IoU {:.3}; report in {}",
        s.objects,
        s.failed,
        s.mean_chamfer,
        s.mean_iou,
        s.report.display()
    );
}
