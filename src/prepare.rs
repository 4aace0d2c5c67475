//! `orbitmesh prepare`: a photo to SV3D's input frame.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use image::DynamicImage;
use nalgebra::Similarity3;
use orbitmesh_pipeline::{Event, OnEvent, Stage, StagedFolder, encode_png, save};
use orbitmesh_render::camera::{Intrinsics, OrbitView, SV3D_FOV_DEG, SV3D_RADIUS};
use orbitmesh_render::open_rasterizer;
use orbitmesh_segment::install;
use orbitmesh_segment::{Crop, MaskSource, PrepareOptions, Segmenter, prepare};

use crate::input::{DeviceArg, tensor_device};
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

/// A segmenter chosen from the arguments, and whether it fell back to the classical model
/// because IS-Net is not installed (worth a note when a photo needs it).
pub struct SegmenterChoice {
    pub segmenter: Segmenter,
    pub fell_back: bool,
}

impl SegmenterArgs {
    /// The segmenter; `device` is asked for only when IS-Net is used.
    pub fn choose(
        &self,
        device: impl FnOnce() -> Result<burn::tensor::Device>,
    ) -> Result<SegmenterChoice> {
        let segmenter = match (self.segmenter, install::installed()) {
            (Some(SegmenterArg::Isnet), None) => bail!(
                "--segmenter isnet: IS-Net's weights are not installed; run `orbitmesh models \
                 fetch isnet` (or scripts/fetch-models.sh) once"
            ),
            (Some(SegmenterArg::Isnet) | None, Some(weights)) => Segmenter::Isnet {
                weights,
                device: device()?,
            },
            (None, None) => {
                return Ok(SegmenterChoice {
                    segmenter: Segmenter::Classical,
                    fell_back: true,
                });
            }
            (Some(SegmenterArg::Classical), _) => Segmenter::Classical,
            (Some(SegmenterArg::None), _) => Segmenter::None,
        };
        Ok(SegmenterChoice {
            segmenter,
            fell_back: false,
        })
    }
}

/// Prepares `image` into `dir` (made only once the input has passed): prepared.png,
/// prepared_white.png, mask.png and crop.json (the square of the photo it shows). Warns through
/// `on_event` where the classical model stood in for IS-Net. Returns what the stage record keeps.
pub fn prepare_into(
    image: &Path,
    opts: &PrepareOptions,
    fell_back: bool,
    dir: &Path,
    on_event: OnEvent<'_>,
) -> Result<serde_json::Value> {
    // Seconds at most, so the input is checked before the output folder is made.
    let prepared = prepare(image, opts)?;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create the folder", dir.display()))?;
    save(&dir.join("prepared.png"), &encode_png(&prepared.rgba)?)?;
    save(
        &dir.join("prepared_white.png"),
        &encode_png(&prepared.white)?,
    )?;
    save(
        &dir.join("mask.png"),
        &encode_png(&DynamicImage::ImageLuma8(prepared.mask).to_rgba8())?,
    )?;
    save(
        &dir.join(CROP_FILE),
        serde_json::to_string_pretty(&prepared.crop)?.as_bytes(),
    )?;
    let source = match prepared.mask_source {
        MaskSource::Alpha => "the image's alpha",
        MaskSource::File => "the mask file",
        MaskSource::Isnet => "the IS-Net segmenter",
        MaskSource::BackgroundModel => "the classical background model",
        MaskSource::WholeImage => "the whole image (no segmenter)",
    };
    if fell_back && prepared.mask_source == MaskSource::BackgroundModel {
        on_event(&Event::Warning {
            stage: Some(Stage::Prepare),
            message: "IS-Net is not installed, so the classical background model found the \
                      object (plain backgrounds only); `orbitmesh models fetch isnet` installs the \
                      learned one"
                .to_string(),
        });
    }
    Ok(serde_json::json!({
        "mask_from": source,
        "segmenter": opts.segmenter.name(),
        "size": opts.size,
        "fill": opts.fill,
    }))
}

pub const CROP_FILE: &str = "crop.json";

/// Takes a mesh made from the prepared image in `dir` (seen from SV3D's camera at `elevation`,
/// azimuth 0) to where that camera would see the object as the photo shows it
/// ([`Crop::to_photo_frame`]). For a photo rendered that way from a normalised scan, as `bench`'s
/// conditioning views are, that is the scan's normalised frame.
pub fn photo_frame(dir: &Path, elevation_deg: f64) -> Result<Similarity3<f64>> {
    let path = dir.join(CROP_FILE);
    let crop: Crop = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?,
    )
    .with_context(|| format!("{}: not a crop record", path.display()))?;
    let view = OrbitView {
        elevation_deg,
        azimuth_deg: 0.0,
        radius: SV3D_RADIUS,
    };
    // Any size does: only the field of view enters.
    Ok(crop.to_photo_frame(&view.camera(Intrinsics::from_fov(SV3D_FOV_DEG, 576, 576))))
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
