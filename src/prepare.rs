//! `orbitmesh prepare`: a photo to SV3D's input frame.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use orbitmesh_orbit::{MaskSource, PrepareOptions, prepare};

use crate::output::{encode_png, save};

#[derive(Args)]
#[command(
    after_help = "Writes DIR/prepared.png (the object on transparent) and \
DIR/prepared_white.png (over white, as SV3D is conditioned). The mask comes from --mask, else the \
image's alpha, else a background model that needs a plain background the object does not touch \
(see crates/orbitmesh-orbit/src/prepare.rs for its limits)."
)]
pub struct PrepareArgs {
    /// A PNG, JPEG or WebP photo of one object
    image: PathBuf,
    /// Output folder
    #[arg(long)]
    out: PathBuf,
    /// A mask image (white = object), the image's size
    #[arg(long)]
    mask: Option<PathBuf>,
    /// Output side in pixels
    #[arg(long, default_value_t = 576, value_parser = clap::value_parser!(u32).range(8..=8192))]
    size: u32,
    /// Fraction of the frame the object's longer side fills
    #[arg(long, default_value_t = 0.85)]
    fill: f32,
}

/// Prepares `image` into `dir` (made only once the input has passed): prepared.png and
/// prepared_white.png. Returns what the stage record keeps.
pub fn prepare_into(image: &Path, opts: &PrepareOptions, dir: &Path) -> Result<serde_json::Value> {
    // Seconds at most, so the input is checked before the output folder is made.
    let prepared = prepare(image, opts)?;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create the folder", dir.display()))?;
    save(&dir.join("prepared.png"), &encode_png(&prepared.rgba)?)?;
    save(
        &dir.join("prepared_white.png"),
        &encode_png(&prepared.white)?,
    )?;
    let source = match prepared.mask_source {
        MaskSource::Alpha => "the image's alpha",
        MaskSource::File => "the mask file",
        MaskSource::BackgroundModel => "the background model",
    };
    Ok(serde_json::json!({ "mask_from": source, "size": opts.size, "fill": opts.fill }))
}

pub fn run(args: PrepareArgs) -> Result<ExitCode> {
    if !(args.fill > 0.1 && args.fill <= 1.0) {
        bail!("--fill must be in (0.1, 1]");
    }
    let opts = PrepareOptions {
        size: args.size,
        fill: args.fill,
        mask: args.mask.clone(),
    };
    let details = prepare_into(&args.image, &opts, &args.out)?;
    println!(
        "{}² input in {} (mask from {})",
        args.size,
        args.out.display(),
        details["mask_from"].as_str().unwrap_or("?")
    );
    Ok(ExitCode::SUCCESS)
}
