//! `orbitmesh refine`: the DMTet fine stage on a coarse mesh and its orbit.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use burn::tensor::{Device, Tensor};
use clap::Args;
use image::RgbaImage;
use orbitmesh_dmtet::texture::{bake, with_material};
use orbitmesh_dmtet::{DmtetError, Guidance, GuidedViews, RefineConfig, Refiner};
use orbitmesh_geom::{TriMesh, read_mesh, write_mesh};
use orbitmesh_pipeline::{Event, OnEvent, Stage, StagedFolder, encode_png, save};
use orbitmesh_render::shade::{Background, shade_rgba};
use orbitmesh_render::{
    Camera, DeviceChoice, Orbit, OrbitView, Rasterizer, Scene, open_rasterizer, read_orbit,
};
use orbitmesh_sv3d::{Sv3d, Sv3dConfig, Sv3dGuidance, on_white, sv3d_cameras};
use serde_json::json;

use crate::input::{DeviceArg, PrecisionArg, tensor_device};
use crate::orbit::read_prepared;
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
    #[arg(long)]
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

/// SV3D as the fine stage's guidance: its weights (and configuration, for a checkpoint of
/// another size) and the prepared image it is conditioned on.
pub struct Sv3dGuide {
    pub weights: PathBuf,
    pub config: Option<PathBuf>,
    pub image: PathBuf,
    pub precision: PrecisionArg,
    pub seed: u64,
}

impl Sv3dGuide {
    /// The model beside `rasterizer`, without autodiff (the guidance lifts only the frames
    /// through its VAE encoder into a graph), judging the orbit's own views in SV3D's order, at
    /// the frames' resolution.
    fn guided_views(&self, orbit: &Orbit, rasterizer: &Rasterizer) -> Result<GuidedViews> {
        let device = tensor_device(rasterizer);
        let dtype = self.precision.dtype(rasterizer);
        let model = match &self.config {
            None => Sv3d::load(&self.weights, &device, dtype)?,
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("{}: cannot read", path.display()))?;
                let config =
                    Sv3dConfig::from_json(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
                Sv3d::load_configured(&self.weights, config, &device, dtype)?
            }
        };
        let views: Vec<OrbitView> = orbit
            .frames
            .iter()
            .map(|f| OrbitView::of_position(f.camera.position()))
            .collect();
        let from_input = |v: &OrbitView| v.azimuth_deg.min(360.0 - v.azimuth_deg);
        let input = views
            .iter()
            .min_by(|a, b| from_input(a).total_cmp(&from_input(b)))
            .map(|v| OrbitView {
                azimuth_deg: 0.0,
                ..*v
            })
            .context("the orbit has no frames")?;
        let (angles, order) = sv3d_cameras(model.variant, input, &views)
            .map_err(|e| anyhow!("{}: {e}", orbit.dir.display()))?;
        let side = orbit.frames[0].image.width();
        let prepared = read_prepared(&self.image)?;
        let image = on_white(&prepared, side, &device);
        Ok(GuidedViews {
            guidance: Box::new(Sv3dSds(Sv3dGuidance::new(model, image, self.seed))),
            views: order
                .iter()
                .zip(angles)
                .map(|(&i, angles)| (orbit.frames[i].camera, angles))
                .collect(),
        })
    }
}

/// SV3D's score distillation as the fine stage's guidance (neither crate depends on the other).
struct Sv3dSds(Sv3dGuidance);

impl Guidance for Sv3dSds {
    fn gradient(&self, frames: Tensor<4>, cameras: &[(f32, f32)]) -> Tensor<4> {
        self.0.gradient(frames, cameras)
    }
}

/// The coarse mesh in `coarse`: a mesh file, or the mesh a coarse stage wrote into a folder.
fn coarse_mesh(coarse: &Path) -> Result<(PathBuf, TriMesh)> {
    let path = if coarse.is_dir() {
        ["nerf.obj", "hull.obj", "coarse.obj"]
            .iter()
            .map(|f| coarse.join(f))
            .find(|p| p.is_file())
            .with_context(|| {
                format!(
                    "{}: no coarse mesh here (nerf.obj or hull.obj)",
                    coarse.display()
                )
            })?
    } else {
        coarse.to_path_buf()
    };
    let mesh = read_mesh(&path)?.mesh;
    Ok((path, mesh))
}

/// PSNR (dB) of `render` against `frame`, both over white.
fn psnr_on_white(render: &RgbaImage, frame: &RgbaImage) -> f64 {
    let on_white = |p: &image::Rgba<u8>, k: usize| {
        let a = f64::from(p[3]) / 255.0;
        f64::from(p[k]) / 255.0 * a + (1.0 - a)
    };
    let mut sum = 0.0f64;
    for (p, q) in render.pixels().zip(frame.pixels()) {
        for k in 0..3 {
            sum += (on_white(p, k) - on_white(q, k)).powi(2);
        }
    }
    orbitmesh_nerf::train::psnr(sum / (render.len() / 4 * 3) as f64)
}

/// Mean held-out PSNRs of the refined surface: through the fine stage's renderer and fitted
/// shading (written as holdout_NNN.png); of the written textured mesh as a plain renderer draws it
/// (4× supersampled) under the fitted light from the camera, as the frames were lit; and of the
/// same mesh unlit.
struct HoldoutPsnr {
    shaded: f64,
    textured: f64,
    unlit: f64,
}

fn holdout_psnr(
    refiner: &Refiner,
    textured: &Path,
    orbit: &Orbit,
    frames: &[usize],
    dir: &Path,
) -> Result<HoldoutPsnr> {
    let mut warnings = Vec::new();
    let mut scene = Scene::new(&read_mesh(textured)?.mesh, &mut warnings)?;
    if let Some(w) = warnings.first() {
        bail!("{}: {w}", textured.display());
    }
    let mut sum = HoldoutPsnr {
        shaded: 0.0,
        textured: 0.0,
        unlit: 0.0,
    };
    for &i in frames {
        let frame = &orbit.frames[i];
        let render = refiner.render(&frame.camera)?;
        sum.shaded += psnr_on_white(&render, &frame.image);
        save(
            &dir.join(format!("holdout_{i:03}.png")),
            &encode_png(&render)?,
        )?;
        let camera = Camera {
            camera_to_world: frame.camera.camera_to_world,
            intrinsics: frame.camera.intrinsics.scaled(2),
        };
        let vis = Rasterizer::Cpu.rasterize(&scene, &camera)?;
        for (light, total) in [
            (refiner.headlight(), &mut sum.textured),
            (None, &mut sum.unlit),
        ] {
            scene.headlight = light;
            let drawn = shade_rgba(&scene, &vis, &camera, 2, Background::Transparent);
            *total += psnr_on_white(&drawn, &frame.image);
        }
    }
    let n = frames.len() as f64;
    Ok(HoldoutPsnr {
        shaded: sum.shaded / n,
        textured: sum.textured / n,
        unlit: sum.unlit / n,
    })
}

/// Refines `coarse` against the orbit in `orbit_dir` into `dir`, reporting each step through
/// `on_event` (which can stop it there); returns the summary written to refine.json.
#[allow(clippy::too_many_arguments)]
pub fn refine_into(
    coarse: &Path,
    orbit_dir: &Path,
    config: RefineConfig,
    holdout: &[usize],
    rasterizer: DeviceChoice,
    texture_size: u32,
    guide: Option<&Sv3dGuide>,
    dir: &Path,
    on_event: OnEvent<'_>,
) -> Result<serde_json::Value> {
    let (coarse_path, mesh) = coarse_mesh(coarse)?;
    let orbit = read_orbit(orbit_dir)?;
    let n = orbit.frames.len();
    if let Some(bad) = holdout.iter().find(|i| **i >= n) {
        bail!("--holdout {bad}: the orbit has {n} frames (0..{})", n - 1);
    }
    let train: Vec<usize> = (0..n).filter(|i| !holdout.contains(i)).collect();
    let started = Instant::now();
    let rasterizer = open_rasterizer(rasterizer)?;
    let rasterizer_name = rasterizer.name();
    // SV3D runs beside the rasterizer: on its GPU when it has one.
    let guidance = guide
        .map(|g| g.guided_views(&orbit, &rasterizer))
        .transpose()?;
    let mut refiner = Refiner::new(
        config.clone(),
        &mesh,
        &orbit,
        train.clone(),
        rasterizer,
        &Device::flex(),
    )
    .map_err(|e| match e {
        DmtetError::Coarse(_) => anyhow!("{}: {e}", coarse_path.display()),
        other => other.into(),
    })?;
    if let Some(guidance) = guidance {
        refiner = refiner.with_guidance(guidance);
    }
    let setup_s = started.elapsed().as_secs_f64();
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create the folder", dir.display()))?;
    let mut smoothed = f32::NAN;
    while !refiner.done() {
        let r = refiner.step()?;
        smoothed = if smoothed.is_finite() {
            0.9 * smoothed + 0.1 * r.loss
        } else {
            r.loss
        };
        on_event(&Event::Step {
            stage: Stage::Fine,
            step: r.step as u64,
            total: config.steps as u64,
            loss: Some(f64::from(smoothed)).filter(|l| l.is_finite()),
            psnr: None,
            detail: Some(format!("{} faces", r.faces)),
        })
        .proceed()?;
    }
    let fine = refiner.mesh()?;
    let seen_by: Vec<_> = train.iter().map(|i| &orbit.frames[*i]).collect();
    let baked = bake(&fine, texture_size, &seen_by, refiner.headlight())?;
    let texture = dir.join("texture.png");
    save(&texture, &encode_png(&baked.texture)?)?;
    write_mesh(&dir.join("fine.obj"), &with_material(baked.mesh, &texture))?;
    let psnr = if holdout.is_empty() {
        None
    } else {
        Some(holdout_psnr(
            &refiner,
            &dir.join("fine.obj"),
            &orbit,
            holdout,
            dir,
        )?)
    };
    let summary = json!({
        "method": "DMTet (marching tetrahedra on a Kuhn grid) refined against the frames' colour and alpha by differentiable rasterization (orbitmesh-dmtet)",
        "coarse": coarse,
        "orbit": orbit_dir,
        "resolution": config.resolution,
        "steps": refiner.step,
        "seconds_setup": setup_s,
        "seconds_optimise": refiner.elapsed_s,
        "seconds_total": started.elapsed().as_secs_f64(),
        "rasterizer": rasterizer_name,
        "guidance": guide.map(|g| json!({
            "model": "SV3D (score distillation, soft-masked)", "weights": g.weights,
            "steps": config.guidance_steps.min(config.steps), "weight": config.guidance_weight,
        })),
        "holdout": holdout,
        "holdout_psnr_db": psnr.as_ref().map(|p| p.shaded),
        "holdout_psnr_textured_db": psnr.as_ref().map(|p| p.textured),
        "holdout_psnr_textured_unlit_db": psnr.as_ref().map(|p| p.unlit),
        "shading_ambient_headlight": refiner.shading(),
        "vertices": fine.positions.len(),
        "faces": fine.faces.len(),
        "seed": config.seed,
    });
    save(
        &dir.join("refine.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    Ok(summary)
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
    if let Some(s) = args.seconds {
        if !(s > 0.0 && s.is_finite()) {
            bail!("--seconds must be positive");
        }
        config.time_budget_s = Some(s);
    }
    let guide = match (&args.weights, &args.image) {
        (Some(weights), Some(image)) => Some(Sv3dGuide {
            weights: weights.clone(),
            config: args.sv3d_config.clone(),
            image: image.clone(),
            precision: args.precision,
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
