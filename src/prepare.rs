//! `orbitmesh prepare`: a photo to SV3D's input frame.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use clap::{Args, ValueEnum};
use orbitmesh_pipeline::stages::prepare::prepare_into;
use orbitmesh_pipeline::{StagedFolder, tensor_device};
use orbitmesh_render::open_rasterizer;
use orbitmesh_segment::install;
use orbitmesh_segment::{PrepareOptions, SegmenterChoice, SegmenterRequest};

use crate::input::DeviceArg;
use crate::progress::Progress;

#[derive(Args)]
#[command(
    after_help = "Writes DIR/prepared.png (the object on transparent), DIR/prepared_white.png (over \
white, as SV3D is conditioned) and DIR/mask.png (the object's mask at the photo's size). The mask \
comes from --mask, else the image's alpha, else the segmenter: IS-Net (learned, for real photos; \
install it once with `orbitmesh models fetch isnet`) or the classical background model, which needs \
a plain background the object does not touch (see crates/orbitmesh-segment/src/prepare.rs)."
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
    #[command(flatten)]
    segmenter: SegmenterArgs,
    /// Where IS-Net runs
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceArg,
    /// Output side in pixels
    #[arg(long, default_value_t = 576, value_parser = clap::value_parser!(u32).range(8..=8192))]
    size: u32,
    /// Fraction of the frame the object's longer side fills
    #[arg(long, default_value_t = 0.85)]
    fill: f32,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum SegmenterArg {
    /// The learned IS-Net background remover (install: `orbitmesh models fetch isnet`)
    Isnet,
    /// The classical background model: plain backgrounds only
    Classical,
    /// None: the whole image is the object
    None,
}

#[derive(Args, Clone)]
pub struct SegmenterArgs {
    /// How to find the object in a photo without alpha [default: isnet when installed, else
    /// classical]
    #[arg(long, value_enum)]
    segmenter: Option<SegmenterArg>,
}

impl SegmenterArgs {
    /// The segmenter; `device` is asked for only when IS-Net is used.
    pub fn choose(
        &self,
        device: impl FnOnce() -> Result<burn::tensor::Device>,
    ) -> Result<SegmenterChoice> {
        let request = match self.segmenter {
            None => SegmenterRequest::Auto,
            Some(SegmenterArg::Isnet) => SegmenterRequest::Isnet,
            Some(SegmenterArg::Classical) => SegmenterRequest::Classical,
            Some(SegmenterArg::None) => SegmenterRequest::None,
        };
        request
            .choose(install::installed(), device)?
            .ok_or_else(|| {
                anyhow!(
                    "--segmenter isnet: IS-Net's weights are not installed; run `orbitmesh models \
                 fetch isnet` (or scripts/fetch-models.sh) once"
                )
            })
    }
}

pub fn run(args: PrepareArgs) -> Result<ExitCode> {
    if !(args.fill > 0.1 && args.fill <= 1.0) {
        bail!("--fill must be in (0.1, 1]");
    }
    let choice = args
        .segmenter
        .choose(|| Ok(tensor_device(&open_rasterizer(args.device.into())?)))?;
    let opts = PrepareOptions {
        size: args.size,
        fill: args.fill,
        mask: args.mask.clone(),
        segmenter: choice.segmenter,
    };
    let staged = StagedFolder::new(&args.out)?;
    let mut progress = Progress::new();
    let details = prepare_into(
        &args.image,
        &opts,
        choice.fell_back,
        staged.path(),
        &mut |e| progress.on_event(e),
    )?;
    staged.publish()?;
    println!(
        "{}² input in {} (mask from {})",
        args.size,
        args.out.display(),
        details["mask_from"].as_str().unwrap_or("?")
    );
    Ok(ExitCode::SUCCESS)
}
