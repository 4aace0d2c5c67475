//! Writes a full-size SV3D checkpoint with seeded random weights in the official file's layout
//! (see `orbitmesh_sv3d::synthetic`): for measuring memory and speed at the real size
//! where the real weights cannot be had.
//!
//! cargo run --release --example sv3d_synthetic -- OUT.safetensors [--variant p|u]
//!     [--dtype f16|f32] [--seed N] [--gain G]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use orbitmesh_sv3d::{StoredType, SyntheticOptions, Variant, write_synthetic};

#[derive(Clone, Copy, ValueEnum)]
enum VariantArg {
    P,
    U,
}

#[derive(Clone, Copy, ValueEnum)]
enum DtypeArg {
    F16,
    F32,
}

/// A full-size SV3D checkpoint with random weights (not a trained model).
#[derive(Parser)]
struct Args {
    /// The .safetensors file to write.
    out: PathBuf,
    #[arg(long, value_enum, default_value = "p")]
    variant: VariantArg,
    #[arg(long, value_enum, default_value = "f16")]
    dtype: DtypeArg,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Multiplies every matrix and kernel: 1 keeps activations of order one; larger values make
    /// the half-precision model overflow on purpose.
    #[arg(long, default_value_t = 1.0)]
    gain: f32,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    if !(args.gain.is_finite() && args.gain > 0.0) {
        bail!("--gain {}: must be a positive number", args.gain);
    }
    let options = SyntheticOptions {
        variant: match args.variant {
            VariantArg::P => Variant::P,
            VariantArg::U => Variant::U,
        },
        stored: match args.dtype {
            DtypeArg::F16 => StoredType::F16,
            DtypeArg::F32 => StoredType::F32,
        },
        seed: args.seed,
        gain: args.gain,
    };
    let started = Instant::now();
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{bar:40} {binary_bytes}/{binary_total_bytes} {eta}")
            .context("progress template")?,
    );
    let summary = write_synthetic(&args.out, options, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    println!(
        "{}: {} tensors, {} parameters, {:.2} GB, in {:.1} s (random weights, not a trained model)",
        args.out.display(),
        summary.tensors,
        summary.parameters,
        summary.bytes as f64 / 1e9,
        started.elapsed().as_secs_f64(),
    );
    Ok(())
}
