//! `orbitmesh refine`: the DMTet fine stage on a coarse mesh and its orbit.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use orbitmesh_dmtet::RefineConfig;
use orbitmesh_pipeline::StagedFolder;
use orbitmesh_pipeline::stages::fine::{Sv3dGuide, refine_into};

use crate::input::{DeviceArg, PrecisionArg, parse_seconds};
use crate::progress::Progress;

#[derive(Args)]
#[command(
    after_help = "COARSE is the coarse stage's folder (its nerf.obj or hull.obj) or a mesh file, in \
the object frame; ORBIT_DIR holds the frames (with alpha) and their transforms.json. Writes \
DIR/fine.obj with fine.mtl and texture.png (object frame), DIR/refine.json and, for --holdout frames, \
DIR/holdout_NNN.png."
)]
pub struct RefineArgs {
    /// Coarse stage folder or mesh file
    coarse: PathBuf,
    /// Folder of frames + transforms.json
    orbit: PathBuf,
    /// Output folder
    #[arg(long)]
    out: PathBuf,
    /// Frames to hold out for PSNR, e.g. 3,10,17 (not refined against)
    #[arg(long, value_delimiter = ',')]
    holdout: Vec<usize>,
    /// Cubes per side of the tetrahedral grid
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(8..=512))]
    resolution: u64,
    #[arg(long, default_value_t = 600)]
    steps: usize,
    /// Of the steps, the first fit the surface to the coarse mesh, before the frames [default: a
    /// sixth]
    #[arg(long)]
    fit_steps: Option<usize>,
    /// Time budget in seconds (stops early)
    #[arg(long, value_parser = parse_seconds)]
    seconds: Option<f64>,
    /// Rasterizer: cpu, gpu or auto (the tensors run on the CPU)
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Side of the baked texture in texels
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(64..=8192))]
    texture_size: u32,
    /// Training views rendered per step
    #[arg(long, default_value_t = RefineConfig::default().views_per_step as u64, value_parser = clap::value_parser!(u64).range(1..=64))]
    views_per_step: u64,
    /// Adam's learning rate for the SDF and the deformations
    #[arg(long, default_value_t = RefineConfig::default().learning_rate)]
    lr: f64,
    /// Adam's learning rate for the colours (logits)
    #[arg(long, default_value_t = RefineConfig::default().colour_learning_rate)]
    colour_lr: f64,
    #[arg(long, default_value_t = RefineConfig::default().rgb_weight)]
    rgb_weight: f32,
    #[arg(long, default_value_t = RefineConfig::default().mask_weight)]
    mask_weight: f32,
    /// Weight of the uniform Laplacian (in grid cells)
    #[arg(long, default_value_t = RefineConfig::default().laplacian_weight)]
    laplacian_weight: f32,
    /// Weight of the normal consistency between neighbouring faces
    #[arg(long, default_value_t = RefineConfig::default().normal_weight)]
    normal_weight: f32,
    /// Weight of the pull of the surface no training camera faces (e.g. the underside) towards
    /// a membrane spanning the seen surface around it
    #[arg(long, default_value_t = RefineConfig::default().unseen_weight)]
    unseen_weight: f32,
    /// SV3D's weights: soft-masked score distillation from the orbit model in the last
    /// --guidance-steps (needs --image; the orbit must include the input view, azimuth 0)
    #[arg(long, requires = "image")]
    weights: Option<PathBuf>,
    /// The sgm-style JSON configuration of a --weights file of another size than the published
    /// sv3d_p and sv3d_u
    #[arg(long, requires = "weights")]
    sv3d_config: Option<PathBuf>,
    /// The prepared input image (`prepare`'s prepared.png) SV3D is conditioned on
    #[arg(long, requires = "weights")]
    image: Option<PathBuf>,
    /// Final steps with SV3D's guidance
    #[arg(long, default_value_t = RefineConfig::default().guidance_steps)]
    guidance_steps: usize,
    /// Weight of SV3D's guidance against the photometric loss
    #[arg(long, default_value_t = RefineConfig::default().guidance_weight)]
    guidance_weight: f32,
    /// Float type of SV3D's weights
    #[arg(long, value_enum, default_value = "auto")]
    precision: PrecisionArg,
}

pub fn run(args: RefineArgs) -> Result<ExitCode> {
    let mut config = RefineConfig {
        resolution: args.resolution as usize,
        seed: args.seed,
        learning_rate: args.lr,
        colour_learning_rate: args.colour_lr,
        rgb_weight: args.rgb_weight,
        mask_weight: args.mask_weight,
        laplacian_weight: args.laplacian_weight,
        normal_weight: args.normal_weight,
        unseen_weight: args.unseen_weight,
        views_per_step: args.views_per_step as usize,
        guidance_steps: args.guidance_steps,
        guidance_weight: args.guidance_weight,
        ..RefineConfig::with_steps(args.steps)
    };
    if let Some(f) = args.fit_steps {
        config.fit_steps = f;
    }
    config.time_budget_s = args.seconds;
    let guide = match (&args.weights, &args.image) {
        (Some(weights), Some(image)) => Some(Sv3dGuide {
            weights: weights.clone(),
            config: args.sv3d_config.clone(),
            image: image.clone(),
            precision: args.precision.into(),
            seed: args.seed,
        }),
        _ => None,
    };
    let staged = StagedFolder::new(&args.out)?;
    let mut progress = Progress::new();
    let summary = refine_into(
        &args.coarse,
        &args.orbit,
        config,
        &args.holdout,
        args.device.into(),
        args.texture_size,
        guide.as_ref(),
        staged.path(),
        &mut |e| progress.on_event(e),
    )?;
    drop(progress);
    staged.publish()?;
    let psnr = summary["holdout_psnr_db"]
        .as_f64()
        .map_or(String::new(), |p| format!(", held-out PSNR {p:.2} dB"));
    let psnr_textured = match (
        summary["holdout_psnr_textured_db"].as_f64(),
        summary["holdout_psnr_textured_unlit_db"].as_f64(),
    ) {
        (Some(lit), Some(unlit)) => {
            format!(" (textured mesh {lit:.2} dB under the fitted light, {unlit:.2} dB unlit)")
        }
        _ => String::new(),
    };
    println!(
        "refine: {} steps in {:.1} s{psnr}{psnr_textured}; mesh {} vertices, {} faces -> {}",
        summary["steps"],
        summary["seconds_total"].as_f64().unwrap_or(0.0),
        summary["vertices"],
        summary["faces"],
        args.out.join("fine.obj").display()
    );
    Ok(ExitCode::SUCCESS)
}
