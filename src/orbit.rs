//! `orbitmesh orbit`: frames around the object of a prepared image, from an orbit generator.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use orbitmesh_orbit::{Inflate, OrbitGenerator};
use orbitmesh_render::camera::{
    self, Intrinsics, OrbitFrame, OrbitView, SV3D_ELEVATION_DEG, SV3D_FOV_DEG, SV3D_FRAMES,
    SV3D_RADIUS,
};
use orbitmesh_render::open_rasterizer;

use crate::input::DeviceArg;
use crate::output::{encode_png, save};

#[derive(Clone, Copy, ValueEnum)]
enum GeneratorArg {
    /// Weight-free classical baseline: the silhouette inflated into a rounded solid
    Inflate,
}

#[derive(Args)]
#[command(
    after_help = "PREPARED is the output of `orbitmesh prepare` (prepared.png): the object \
on transparent, centred, seen from azimuth 0 at --input-elevation. Writes DIR/000.png…, \
cameras.json, transforms.json and stage.json, which names the generator."
)]
pub struct OrbitArgs {
    /// The prepared input image
    prepared: PathBuf,
    /// Output folder
    #[arg(long)]
    out: PathBuf,
    /// Which generator makes the frames
    #[arg(long, value_enum, default_value = "inflate")]
    generator: GeneratorArg,
    /// Number of frames, evenly spaced in azimuth from the input view
    #[arg(long, default_value_t = SV3D_FRAMES as u64, value_parser = clap::value_parser!(u64).range(1..=360))]
    frames: u64,
    /// Elevation of the orbit in degrees
    #[arg(long, default_value_t = SV3D_ELEVATION_DEG, allow_negative_numbers = true)]
    elevation: f64,
    /// Elevation the input photo was taken from, in degrees
    #[arg(long, default_value_t = SV3D_ELEVATION_DEG, allow_negative_numbers = true)]
    input_elevation: f64,
    /// Frame side in pixels
    #[arg(long, default_value_t = 576, value_parser = clap::value_parser!(u32).range(8..=4096))]
    res: u32,
    /// Where to rasterize
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
}

pub fn run(args: OrbitArgs) -> Result<ExitCode> {
    let prepared = image::open(&args.prepared)
        .with_context(|| format!("{}: not a readable image", args.prepared.display()))?
        .to_rgba8();
    if prepared.width() != prepared.height() {
        bail!(
            "{}: {}×{} is not square; make it with `orbitmesh prepare`",
            args.prepared.display(),
            prepared.width(),
            prepared.height()
        );
    }
    let generator: Box<dyn OrbitGenerator> = match args.generator {
        GeneratorArg::Inflate => Box::new(Inflate::default()),
    };
    let rasterizer = open_rasterizer(args.device.into())?;
    let input = OrbitView {
        elevation_deg: args.input_elevation,
        azimuth_deg: 0.0,
        radius: SV3D_RADIUS,
    };
    let views = camera::orbit(
        &camera::even_azimuths(args.frames as usize),
        args.elevation,
        SV3D_RADIUS,
    );
    let intrinsics = Intrinsics::from_fov(SV3D_FOV_DEG, args.res, args.res);
    let started = Instant::now();
    let images = generator
        .generate(&prepared, input, &views, intrinsics, &rasterizer)
        .with_context(|| format!("{}", args.prepared.display()))?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("{}: cannot create the folder", args.out.display()))?;
    let mut frames = Vec::new();
    for (k, (img, view)) in images.iter().zip(&views).enumerate() {
        let file = format!("{k:03}.png");
        save(&args.out.join(&file), &encode_png(img)?)?;
        frames.push(OrbitFrame {
            file,
            view: Some(*view),
            camera: view.camera(intrinsics),
        });
    }
    camera::write_cameras_json(&args.out.join("cameras.json"), &frames)?;
    camera::write_transforms_json(&args.out.join("transforms.json"), &frames)?;
    let seconds = started.elapsed().as_secs_f64();
    let stage = serde_json::json!({
        "stage": "orbit",
        "orbitmesh": env!("CARGO_PKG_VERSION"),
        "generator": generator.name(),
        "description": generator.describe(),
        "input": args.prepared,
        "settings": {
            "frames": args.frames, "elevation_deg": args.elevation,
            "input_elevation_deg": args.input_elevation, "res": args.res,
            "rasterizer": rasterizer.name(),
        },
        "seconds": seconds,
    });
    save(
        &args.out.join("stage.json"),
        serde_json::to_string_pretty(&stage)?.as_bytes(),
    )?;
    println!(
        "{} frames in {} from {} ({seconds:.2} s)",
        frames.len(),
        args.out.display(),
        generator.describe()
    );
    Ok(ExitCode::SUCCESS)
}
