//! `orbitmesh orbit`: frames around the object of a prepared image, from an orbit generator.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::builder::RangedU64ValueParser;
use clap::{Args, ValueEnum};
use orbitmesh_orbit::{InflateProfile, OrbitOrder};
use orbitmesh_pipeline::stages::orbit::{orbit_folder, read_prepared};
use orbitmesh_pipeline::{GeneratorConfig, OrbitConfig, OrbitSource};
use orbitmesh_render::camera::{SV3D_ELEVATION_DEG, SV3D_FRAMES};
use orbitmesh_render::open_rasterizer;

use crate::input::{DeviceArg, PrecisionArg, value_enum};
use crate::progress::Progress;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GeneratorArg {
    /// Weight-free classical baseline: the silhouette inflated into a solid (see --profile)
    Inflate,
    /// SV3D's video diffusion model; needs --weights
    Sv3d,
}

value_enum! {
    /// The depth profile of the inflate generator's proxy.
    pub enum ProfileArg => InflateProfile {
        /// A disc becomes a ball: as deep as the silhouette is thick
        Round,
        /// Each row of the silhouette a slice of a solid of revolution: as deep as it is wide
        Revolved,
    }
}

/// The profile asked for, else the pipeline's default.
pub fn inflate_profile(profile: Option<ProfileArg>) -> InflateProfile {
    profile.map_or(GeneratorConfig::INFLATE_PROFILE, Into::into)
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
    #[arg(long, default_value_t = GeneratorConfig::SV3D_STEPS, value_parser = RangedU64ValueParser::<usize>::new().range(1..=1000))]
    pub steps: usize,
    /// Seed of --generator sv3d's noise
    #[arg(long, default_value_t = GeneratorConfig::SV3D_SEED)]
    pub seed: u64,
    /// Frames decoded at once by --generator sv3d (fewer: less memory)
    #[arg(long, default_value_t = GeneratorConfig::SV3D_DECODE_CHUNK, value_parser = RangedU64ValueParser::<usize>::new().range(1..=21))]
    pub decode_chunk: usize,
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

    /// The generator's configuration, checked ([`GeneratorArgs::check`]).
    pub fn config(&self) -> Result<GeneratorConfig> {
        self.check()?;
        Ok(match (self.generator(), &self.weights) {
            (GeneratorArg::Sv3d, Some(weights)) => GeneratorConfig::Sv3d {
                weights: weights.clone(),
                steps: self.steps,
                seed: self.seed,
                decode_chunk: self.decode_chunk,
                precision: self.precision.into(),
            },
            _ => GeneratorConfig::Inflate {
                profile: inflate_profile(self.profile),
            },
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

#[derive(Clone, Copy, ValueEnum)]
pub enum OrderArg {
    /// Cameras from the folder's transforms.json
    Transforms,
    /// SV3D's output: images sorted by name, frame k at azimuth 360°·(k+1)/N, input view last
    Sv3d,
}

impl OrderArg {
    /// How frames imported with this order are posed, on an orbit at `elevation_deg`.
    pub fn order(self, elevation_deg: f64) -> OrbitOrder {
        match self {
            OrderArg::Transforms => OrbitOrder::Transforms,
            OrderArg::Sv3d => OrbitOrder::Sv3d { elevation_deg },
        }
    }
}

pub fn run(args: OrbitArgs) -> Result<ExitCode> {
    let (source, prepared) = match (&args.from_frames, &args.prepared) {
        (Some(from), _) => {
            let order = args.orbit_order.order(args.elevation);
            let source = OrbitSource::Import {
                dir: from.clone(),
                order,
            };
            (source, None)
        }
        (None, Some(prepared)) => {
            // The input is checked before the (possibly slow) device is opened.
            read_prepared(prepared)?;
            let source = OrbitSource::Generate(args.generator.config()?);
            (source, Some(prepared.as_path()))
        }
        (None, None) => bail!("give PREPARED (a prepared image) or --from-frames DIR"),
    };
    let settings = OrbitConfig {
        frames: args.frames as usize,
        elevation_deg: args.elevation,
        input_elevation_deg: args.input_elevation,
        res: args.res,
    };
    let rasterizer = open_rasterizer(args.device.into())?;
    let mut progress = Progress::new();
    let (details, seconds) = orbit_folder(
        &source,
        &settings,
        prepared,
        &rasterizer,
        &args.out,
        &mut |e| progress.on_event(e),
    )?;
    drop(progress);
    println!(
        "{} in {} ({seconds:.2} s)",
        details["description"].as_str().unwrap_or("?"),
        args.out.display(),
    );
    Ok(ExitCode::SUCCESS)
}
