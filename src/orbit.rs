//! `orbitmesh orbit`: frames around the object of a prepared image, from an orbit generator.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use image::RgbaImage;
use orbitmesh_orbit::frames::{OrbitOrder, import_frames};
use orbitmesh_orbit::{Inflate, OrbitGenerator};
use orbitmesh_render::camera::{
    self, Intrinsics, OrbitFrame, OrbitView, SV3D_ELEVATION_DEG, SV3D_FOV_DEG, SV3D_FRAMES,
    SV3D_RADIUS,
};
use orbitmesh_render::{Rasterizer, open_rasterizer};

use crate::input::DeviceArg;
use crate::output::{encode_png, save};
use crate::stage;

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
    #[arg(required_unless_present = "from_frames")]
    prepared: Option<PathBuf>,
    /// Import an orbit made elsewhere (e.g. by the official SV3D code) instead of generating one
    #[arg(long, conflicts_with = "prepared")]
    from_frames: Option<PathBuf>,
    /// How --from-frames are posed
    #[arg(long, value_enum, default_value = "transforms")]
    orbit_order: OrderArg,
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

/// What an orbit is generated with.
pub struct OrbitSettings {
    pub frames: usize,
    pub elevation: f64,
    pub input_elevation: f64,
    pub res: u32,
}

impl OrbitSettings {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "generator": "inflate", "frames": self.frames, "elevation_deg": self.elevation,
            "input_elevation_deg": self.input_elevation, "res": self.res,
        })
    }
}

/// Reads a prepared image, checking it is one (square).
pub fn read_prepared(path: &Path) -> Result<RgbaImage> {
    let image = image::open(path)
        .with_context(|| format!("{}: not a readable image", path.display()))?
        .to_rgba8();
    if image.width() != image.height() {
        bail!(
            "{}: {}×{} is not square; make it with `orbitmesh prepare`",
            path.display(),
            image.width(),
            image.height()
        );
    }
    Ok(image)
}

/// Generates the orbit of the prepared image (read from `prepared`) into `dir`: frames, cameras.json,
/// transforms.json. Returns what the stage record keeps (the generator, labelled).
pub fn orbit_into(
    prepared: &Path,
    image: &RgbaImage,
    settings: &OrbitSettings,
    rasterizer: &Rasterizer,
    dir: &Path,
) -> Result<serde_json::Value> {
    let generator: Box<dyn OrbitGenerator> = Box::new(Inflate::default());
    let input = OrbitView {
        elevation_deg: settings.input_elevation,
        azimuth_deg: 0.0,
        radius: SV3D_RADIUS,
    };
    let views = camera::orbit(
        &camera::even_azimuths(settings.frames),
        settings.elevation,
        SV3D_RADIUS,
    );
    let intrinsics = Intrinsics::from_fov(SV3D_FOV_DEG, settings.res, settings.res);
    let images = generator
        .generate(image, input, &views, intrinsics, rasterizer)
        .with_context(|| format!("{}", prepared.display()))?;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create the folder", dir.display()))?;
    let mut frames = Vec::new();
    for (k, (img, view)) in images.iter().zip(&views).enumerate() {
        let file = format!("{k:03}.png");
        save(&dir.join(&file), &encode_png(img)?)?;
        frames.push(OrbitFrame {
            file,
            view: Some(*view),
            camera: view.camera(intrinsics),
        });
    }
    camera::write_cameras_json(&dir.join("cameras.json"), &frames)?;
    camera::write_transforms_json(&dir.join("transforms.json"), &frames)?;
    Ok(serde_json::json!({
        "generator": generator.name(),
        "description": generator.describe(),
        "rasterizer": rasterizer.name(),
        "frames": frames.len(),
    }))
}

#[derive(Clone, Copy, ValueEnum)]
pub enum OrderArg {
    /// Cameras from the folder's transforms.json
    Transforms,
    /// SV3D's output: images sorted by name, frame k at azimuth 360°·(k+1)/N, input view last
    Sv3d,
}

/// Imports an orbit made elsewhere from `from` into `dir` (frames with alpha, camera files).
pub fn import_into(
    from: &Path,
    order: OrderArg,
    elevation: f64,
    dir: &Path,
) -> Result<serde_json::Value> {
    let order = match order {
        OrderArg::Transforms => OrbitOrder::Transforms,
        OrderArg::Sv3d => OrbitOrder::Sv3d {
            elevation_deg: elevation,
        },
    };
    let imported = import_frames(from, order)?;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create the folder", dir.display()))?;
    let mut frames = Vec::new();
    for (k, f) in imported.iter().enumerate() {
        let file = format!("{k:03}.png");
        save(&dir.join(&file), &encode_png(&f.image)?)?;
        frames.push(OrbitFrame {
            file,
            view: f.view,
            camera: f.camera,
        });
    }
    if frames.iter().all(|f| f.view.is_some()) {
        camera::write_cameras_json(&dir.join("cameras.json"), &frames)?;
    }
    camera::write_transforms_json(&dir.join("transforms.json"), &frames)?;
    let sources: Vec<_> = imported
        .iter()
        .map(|f| f.source.display().to_string())
        .collect();
    Ok(serde_json::json!({
        "generator": "frames",
        "description": "frames: an orbit imported from existing images",
        "from": from,
        "sources": sources,
    }))
}

pub fn run(args: OrbitArgs) -> Result<ExitCode> {
    if let Some(from) = &args.from_frames {
        let started = Instant::now();
        let details = import_into(from, args.orbit_order, args.elevation, &args.out)?;
        let settings =
            serde_json::json!({ "generator": "frames", "elevation_deg": args.elevation });
        let files = stage::files_in(from)?;
        let inputs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        let fingerprint = stage::fingerprint(&settings, &inputs);
        let seconds = started.elapsed().as_secs_f64();
        stage::write_stage_json(&args.out, "orbit", &fingerprint, details, seconds)?;
        println!(
            "{} frames imported from {} into {}",
            files.len(),
            from.display(),
            args.out.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let Some(prepared) = &args.prepared else {
        bail!("give PREPARED (a prepared image) or --from-frames DIR");
    };
    let settings = OrbitSettings {
        frames: args.frames as usize,
        elevation: args.elevation,
        input_elevation: args.input_elevation,
        res: args.res,
    };
    // The input is checked before the (possibly slow) device is opened.
    let image = read_prepared(prepared)?;
    let rasterizer = open_rasterizer(args.device.into())?;
    let started = Instant::now();
    let details = orbit_into(prepared, &image, &settings, &rasterizer, &args.out)?;
    let seconds = started.elapsed().as_secs_f64();
    let fingerprint = stage::fingerprint(&settings.to_json(), &[prepared]);
    stage::write_stage_json(&args.out, "orbit", &fingerprint, details.clone(), seconds)?;
    println!(
        "{} frames in {} from {} ({seconds:.2} s)",
        settings.frames,
        args.out.display(),
        details["description"].as_str().unwrap_or("?")
    );
    Ok(ExitCode::SUCCESS)
}
