//! `orbitmesh nerf`: train the hash-grid NeRF on an orbit and extract its mesh.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use orbitmesh_nerf::train::FixedSampling;
use orbitmesh_pipeline::stages::coarse::{NerfSettings, nerf_into};
use orbitmesh_pipeline::tensor_device;
use orbitmesh_render::open_rasterizer;

use crate::input::{DeviceArg, parse_seconds};
use crate::progress::Progress;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NerfPreset {
    /// About 90 s of training on 2 cores, a 192³ mesh grid
    Fast,
    /// About 5 min of training on 2 cores, a 256³ mesh grid
    Default,
}

#[derive(Args)]
#[command(
    after_help = "ORBIT_DIR holds frames and their transforms.json (from `orbitmesh render` or a \
nerfstudio/instant-ngp orbit). Frames with alpha are trained over a random background colour per \
ray, and their silhouettes carve the occupancy grid; frames without alpha are trained against \
--background. Writes DIR/nerf.obj (vertex colours, object frame), DIR/density.npy, DIR/field.bpk \
(the burn record) and DIR/nerf.json; DIR/checkpoint lets an interrupted run resume."
)]
pub struct NerfArgs {
    /// Folder of frames + transforms.json
    orbit: PathBuf,
    /// Output folder
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value = "default")]
    preset: NerfPreset,
    /// Where to train: the hash-grid and compositing kernels exist for both, the GPU through
    /// wgpu (Vulkan, Metal, DX12)
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
    /// Frames to hold out for PSNR, e.g. 3,10,17 (not trained on)
    #[arg(long, value_delimiter = ',')]
    holdout: Vec<usize>,
    /// Step budget [default: from the preset]
    #[arg(long)]
    steps: Option<usize>,
    /// Training time budget in seconds [default: from the preset]
    #[arg(long, value_parser = parse_seconds)]
    seconds: Option<f64>,
    /// Points per side of the density grid the mesh is extracted from [default: from the preset]
    #[arg(long, value_parser = clap::value_parser!(u64).range(16..=1024))]
    mesh_resolution: Option<u64>,
    /// log2 of the hash table's entries per level (instant-ngp: 19) [default: 19 for frames of
    /// 512² and up, else 17: a smaller orbit cannot fill more, and a smaller table trains faster]
    #[arg(long, value_parser = clap::value_parser!(u32).range(8..=24))]
    table_log2: Option<u32>,
    /// Finest hash-grid resolution (instant-ngp: 2048) [default: 4× the frames' longest side, in
    /// 128..2048: finer levels than the pixels resolve only add cost]
    #[arg(long, value_parser = clap::value_parser!(u32).range(32..=8192))]
    finest_resolution: Option<u32>,
    /// Ray-marching steps across the unit cube's diagonal (instant-ngp: 1024)
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(16..=4096))]
    march_steps: u32,
    /// Background colour (0..1) for frames without alpha
    #[arg(long, value_delimiter = ',', default_value = "1,1,1")]
    background: Vec<f32>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Start over even if DIR/checkpoint holds a run with the same settings
    #[arg(long)]
    fresh: bool,
    /// Benchmark mode (the peer's): this many evenly spread samples per ray, no occupancy grid
    #[arg(long, requires = "fixed_rays")]
    fixed_samples: Option<usize>,
    /// Rays per step in the benchmark mode
    #[arg(long, requires = "fixed_samples")]
    fixed_rays: Option<usize>,
}

pub fn run(args: NerfArgs) -> Result<ExitCode> {
    // The GPU's device (through wgpu) where the rasterizer would use one.
    let device = tensor_device(&open_rasterizer(args.device.into())?);
    let mut settings = NerfSettings::new(args.preset == NerfPreset::Fast);
    if let Some(s) = args.steps {
        settings.config.max_steps = s;
    }
    if let Some(s) = args.seconds {
        settings.config.time_budget_s = s;
    }
    if let Some(r) = args.mesh_resolution {
        settings.mesh_resolution = r as usize;
    }
    let [r, g, b] = args.background[..] else {
        bail!("--background takes three numbers, e.g. 1,1,1");
    };
    if [r, g, b].iter().any(|c| !(0.0..=1.0).contains(c)) {
        bail!("--background: each channel must be in 0..1");
    }
    settings.background = [r, g, b];
    settings.holdout = args.holdout;
    settings.config.seed = args.seed;
    settings.table_log2 = args.table_log2;
    settings.finest_resolution = args.finest_resolution;
    settings.config.step_size = 3f32.sqrt() / args.march_steps as f32;
    settings.fresh = args.fresh;
    if let (Some(samples), Some(rays)) = (args.fixed_samples, args.fixed_rays) {
        if samples == 0 || rays == 0 {
            bail!("--fixed-samples and --fixed-rays must be positive");
        }
        settings.config.fixed_sampling = Some(FixedSampling { rays, samples });
    }
    let mut progress = Progress::new();
    let summary = nerf_into(&args.orbit, &settings, &device, &args.out, &mut |e| {
        progress.on_event(e)
    })?;
    drop(progress);
    let psnr = summary["holdout_psnr_db"]
        .as_f64()
        .map_or(String::new(), |p| format!(", held-out PSNR {p:.2} dB"));
    println!(
        "nerf: {} steps in {:.1} s{psnr}; mesh {} vertices, {} faces -> {}",
        summary["steps"],
        summary["train_seconds_total"].as_f64().unwrap_or(0.0),
        summary["vertices"],
        summary["faces"],
        args.out.join("nerf.obj").display()
    );
    Ok(ExitCode::SUCCESS)
}
