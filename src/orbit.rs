//! `orbitmesh orbit`: frames around the object of a prepared image, from an orbit generator.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use image::RgbaImage;
use orbitmesh_orbit::frames::{OrbitOrder, import_frames};
use orbitmesh_orbit::{Inflate, InflateProfile, OrbitGenerator, OrbitProgress, Sv3dGenerator};
use orbitmesh_pipeline::{
    Event, Flow, OnEvent, Stage, StageRecord, StagedFolder, encode_png, files_in, fingerprint,
    save, write_stage_record,
};
use orbitmesh_render::camera::{
    self, Intrinsics, OrbitFrame, OrbitView, SV3D_ELEVATION_DEG, SV3D_FOV_DEG, SV3D_FRAMES,
    SV3D_RADIUS,
};
use orbitmesh_render::{Rasterizer, open_rasterizer};
use orbitmesh_sv3d::SampleOptions;

use crate::input::{DeviceArg, PrecisionArg, tensor_device, value_name};
use crate::progress::Progress;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GeneratorArg {
    /// Weight-free classical baseline: the silhouette inflated into a solid (see --profile)
    Inflate,
    /// SV3D's video diffusion model; needs --weights
    Sv3d,
}

/// Revolved is the default: on gso-mini's three objects it measured closer to the scans than the
/// round profile (hull only, bowl 0.048 against 0.088 Chamfer), and no worse on the others.
pub const DEFAULT_PROFILE: ProfileArg = ProfileArg::Revolved;

/// The depth profile of the inflate generator's proxy.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProfileArg {
    /// A disc becomes a ball: as deep as the silhouette is thick
    Round,
    /// Each row of the silhouette a slice of a solid of revolution: as deep as it is wide
    Revolved,
}

impl ProfileArg {
    /// The inflate generator's settings, as the orbit stage's fingerprint keeps them.
    pub fn inflate_settings(self) -> serde_json::Value {
        serde_json::json!({ "generator": "inflate", "profile": value_name(self) })
    }
}

impl From<ProfileArg> for InflateProfile {
    fn from(profile: ProfileArg) -> Self {
        match profile {
            ProfileArg::Round => InflateProfile::Round,
            ProfileArg::Revolved => InflateProfile::Revolved,
        }
    }
}

/// Where the official SV3D weights come from: nothing here downloads them.
const SV3D_WEIGHTS_HELP: &str = "download sv3d_p.safetensors (or sv3d_u.safetensors) yourself from \
https://huggingface.co/stabilityai/sv3d (accept its license there), then pass --weights FILE";

/// The orbit generator and its settings, shared by `orbit` and `mesh`.
#[derive(Args)]
pub struct GeneratorArgs {
    /// Which generator makes the frames [default: sv3d with --weights, else inflate]
    #[arg(long, value_enum)]
    pub generator: Option<GeneratorArg>,
    /// Depth profile of --generator inflate [default: revolved]
    #[arg(long, value_enum)]
    pub profile: Option<ProfileArg>,
    /// SV3D's weights for --generator sv3d: the official sv3d_p.safetensors or sv3d_u.safetensors
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Sampling steps of --generator sv3d
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub steps: u64,
    /// Seed of --generator sv3d's noise
    #[arg(long, default_value_t = 23)]
    pub seed: u64,
    /// Frames decoded at once by --generator sv3d (fewer: less memory)
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u64).range(1..=21))]
    pub decode_chunk: u64,
    /// Float type of --generator sv3d's weights
    #[arg(long, value_enum, default_value = "auto")]
    pub precision: PrecisionArg,
}

impl GeneratorArgs {
    fn generator(&self) -> GeneratorArg {
        self.generator.unwrap_or(if self.weights.is_some() {
            GeneratorArg::Sv3d
        } else {
            GeneratorArg::Inflate
        })
    }

    fn profile(&self) -> ProfileArg {
        self.profile.unwrap_or(DEFAULT_PROFILE)
    }

    /// Fails at once when the generator cannot run (SV3D without weights), before any work.
    pub fn check(&self) -> Result<()> {
        match (self.generator(), &self.weights) {
            (GeneratorArg::Sv3d, None) => {
                bail!("--generator sv3d needs --weights: {SV3D_WEIGHTS_HELP}")
            }
            (GeneratorArg::Sv3d, Some(w)) if !w.is_file() => {
                bail!("{}: no such weights file; {SV3D_WEIGHTS_HELP}", w.display())
            }
            (GeneratorArg::Inflate, Some(_)) => {
                bail!("--weights is for --generator sv3d; inflate needs none")
            }
            (GeneratorArg::Sv3d, _) if self.profile.is_some() => {
                bail!("--profile is for --generator inflate; sv3d has no proxy")
            }
            _ => Ok(()),
        }
    }

    /// SV3D's weights when SV3D makes the orbit.
    pub fn sv3d_weights(&self) -> Option<&Path> {
        match self.generator() {
            GeneratorArg::Sv3d => self.weights.as_deref(),
            GeneratorArg::Inflate => None,
        }
    }

    /// The settings a stage's fingerprint keeps: no paths, the weights file's bytes are one of
    /// its inputs (a checkpoint moved or copied elsewhere keeps the stage current).
    pub fn to_json(&self) -> serde_json::Value {
        match self.generator() {
            GeneratorArg::Inflate => self.profile().inflate_settings(),
            GeneratorArg::Sv3d => serde_json::json!({
                "generator": "sv3d", "steps": self.steps,
                "seed": self.seed, "decode_chunk": self.decode_chunk,
                "precision": value_name(self.precision),
            }),
        }
    }

    /// Loads the generator; SV3D runs on the rasterizer's GPU when it has one, else the CPU
    /// (with a warning through `on_event`).
    pub fn open(
        &self,
        rasterizer: &Rasterizer,
        on_event: OnEvent<'_>,
    ) -> Result<Box<dyn OrbitGenerator>> {
        self.check()?;
        Ok(match (self.generator(), &self.weights) {
            (GeneratorArg::Sv3d, Some(path)) => {
                let device = tensor_device(rasterizer);
                let options = SampleOptions {
                    steps: self.steps as usize,
                    seed: self.seed,
                    decode_chunk: self.decode_chunk as usize,
                    ..Default::default()
                };
                let dtype = self.precision.dtype(rasterizer);
                let generator = Sv3dGenerator::load(path, &device, dtype, options)?;
                if matches!(rasterizer, Rasterizer::Cpu) {
                    on_event(&Event::Warning {
                        stage: Some(Stage::Orbit),
                        message: "SV3D on the CPU takes hours for one orbit; use --device gpu \
                                  where there is one"
                            .to_string(),
                    });
                }
                Box::new(generator)
            }
            _ => Box::new(Inflate {
                profile: self.profile().into(),
                ..Default::default()
            }),
        })
    }
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
    #[command(flatten)]
    generator: GeneratorArgs,
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
    /// The generator's own settings ([`GeneratorArgs::to_json`]).
    pub generator: serde_json::Value,
    pub frames: usize,
    pub elevation: f64,
    pub input_elevation: f64,
    pub res: u32,
}

impl OrbitSettings {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "generator": self.generator, "frames": self.frames, "elevation_deg": self.elevation,
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
/// transforms.json. Reports each part of the generation as a step (its time in the detail:
/// `UNet step 3/50 in 1.20 s`), the generator's warnings and each frame as it is written. A
/// generator cannot be stopped inside: a stop asked for at a part takes effect once it returns,
/// before any frame is written. Returns what the stage record keeps (the generator, labelled).
pub fn orbit_into(
    prepared: &Path,
    image: &RgbaImage,
    settings: &OrbitSettings,
    generator: &dyn OrbitGenerator,
    rasterizer: &Rasterizer,
    dir: &Path,
    on_event: OnEvent<'_>,
) -> Result<serde_json::Value> {
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
    let mut flow = Flow::Continue;
    let mut on_part = |p: OrbitProgress| {
        let answer = on_event(&Event::Step {
            stage: Stage::Orbit,
            step: p.done as u64,
            total: p.total as u64,
            loss: None,
            psnr: None,
            detail: Some(format!("{} in {:.2} s", p.part, p.seconds)),
        });
        if answer == Flow::Stop {
            flow = Flow::Stop;
        }
    };
    let generated = generator
        .generate(image, input, &views, intrinsics, rasterizer, &mut on_part)
        .with_context(|| format!("{}", prepared.display()))?;
    flow.proceed()?;
    for w in generated.warnings {
        on_event(&Event::Warning {
            stage: Some(Stage::Orbit),
            message: w,
        });
    }
    let images = generated.frames;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create the folder", dir.display()))?;
    let mut frames = Vec::new();
    for (k, (img, view)) in images.iter().zip(&views).enumerate() {
        let file = format!("{k:03}.png");
        write_frame(dir, &file, img, k, on_event)?;
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

/// Writes frame `index` of an orbit as `dir/file` and reports it.
fn write_frame(
    dir: &Path,
    file: &str,
    image: &RgbaImage,
    index: usize,
    on_event: OnEvent<'_>,
) -> Result<()> {
    let path = dir.join(file);
    save(&path, &encode_png(image)?)?;
    on_event(&Event::Frame {
        stage: Stage::Orbit,
        index,
        path,
    });
    Ok(())
}

/// Imports an orbit made elsewhere from `from` into `dir` (frames with alpha, camera files),
/// reporting each frame as it is written.
pub fn import_into(
    from: &Path,
    order: OrderArg,
    elevation: f64,
    dir: &Path,
    on_event: OnEvent<'_>,
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
        write_frame(dir, &file, &f.image, k, on_event)?;
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
    let mut progress = Progress::new();
    if let Some(from) = &args.from_frames {
        let started = Instant::now();
        let staged = StagedFolder::new(&args.out)?;
        let details = import_into(
            from,
            args.orbit_order,
            args.elevation,
            staged.path(),
            &mut |e| progress.on_event(e),
        )?;
        let settings =
            serde_json::json!({ "generator": "frames", "elevation_deg": args.elevation });
        let files = files_in(from)?;
        let inputs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        let fp = fingerprint(&settings, &inputs)?;
        let seconds = started.elapsed().as_secs_f64();
        let record = StageRecord::new("orbit", fp, details, seconds);
        write_stage_record(staged.path(), &record)?;
        staged.publish()?;
        drop(progress);
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
    args.generator.check()?;
    let settings = OrbitSettings {
        generator: args.generator.to_json(),
        frames: args.frames as usize,
        elevation: args.elevation,
        input_elevation: args.input_elevation,
        res: args.res,
    };
    // The input is checked before the (possibly slow) device is opened.
    let image = read_prepared(prepared)?;
    let rasterizer = open_rasterizer(args.device.into())?;
    let started = Instant::now();
    let generator = args
        .generator
        .open(&rasterizer, &mut |e| progress.on_event(e))?;
    let staged = StagedFolder::new(&args.out)?;
    let details = orbit_into(
        prepared,
        &image,
        &settings,
        generator.as_ref(),
        &rasterizer,
        staged.path(),
        &mut |e| progress.on_event(e),
    )?;
    let seconds = started.elapsed().as_secs_f64();
    let mut inputs: Vec<&Path> = vec![prepared];
    inputs.extend(args.generator.weights.as_deref());
    let fp = fingerprint(&settings.to_json(), &inputs)?;
    let record = StageRecord::new("orbit", fp, details.clone(), seconds);
    write_stage_record(staged.path(), &record)?;
    staged.publish()?;
    drop(progress);
    println!(
        "{} frames in {} from {} ({seconds:.2} s)",
        settings.frames,
        args.out.display(),
        details["description"].as_str().unwrap_or("?")
    );
    Ok(ExitCode::SUCCESS)
}
