//! The fine stage: DMTet refined against the orbit's frames by differentiable rasterization
//! (with SV3D's score distillation when its weights are given), textured.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::{Device, Tensor};
use image::RgbaImage;
use orbitmesh_dmtet::texture::{bake, with_material};
use orbitmesh_dmtet::{DmtetError, Guidance, GuidedViews, RefineConfig, Refiner};
use orbitmesh_geom::{TriMesh, read_mesh, write_mesh};
use orbitmesh_render::shade::{Background, shade_rgba};
use orbitmesh_render::{
    Camera, DeviceChoice, Orbit, OrbitView, Rasterizer, Scene, open_rasterizer, read_orbit,
};
use orbitmesh_sv3d::{Sv3d, Sv3dConfig, Sv3dGuidance, on_white, sv3d_cameras};
use serde_json::{Value, json};

use crate::error::{PipelineError, Result};
use crate::event::{Event, OnEvent, Stage};
use crate::output::{encode_png, make_folder, save, save_json};
use crate::plan::{Precision, tensor_device};
use crate::stages::coarse::training_frames;
use crate::stages::orbit::read_prepared;

/// SV3D as the fine stage's guidance: its weights (and configuration, for a checkpoint of
/// another size) and the prepared image it is conditioned on.
pub struct Sv3dGuide {
    pub weights: PathBuf,
    pub config: Option<PathBuf>,
    pub image: PathBuf,
    pub precision: Precision,
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
                    .map_err(PipelineError::io(path, "cannot read"))?;
                let config = Sv3dConfig::from_json(&text)
                    .map_err(|e| PipelineError::input(path, e.to_string()))?;
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
            .ok_or_else(|| PipelineError::input(&orbit.dir, "the orbit has no frames"))?;
        let (angles, order) = sv3d_cameras(model.variant, input, &views)
            .map_err(|e| PipelineError::input(&orbit.dir, e.to_string()))?;
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
            .ok_or_else(|| {
                PipelineError::input(coarse, "no coarse mesh here (nerf.obj or hull.obj)")
            })?
    } else {
        coarse.to_path_buf()
    };
    let mesh = read_mesh(&path)?.mesh;
    Ok((path, mesh))
}

/// PSNR (dB) of `render` against `frame`, both over white.
pub fn psnr_on_white(render: &RgbaImage, frame: &RgbaImage) -> f64 {
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
        return Err(PipelineError::input(textured, w.clone()));
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
) -> Result<Value> {
    let (coarse_path, mesh) = coarse_mesh(coarse)?;
    let orbit = read_orbit(orbit_dir)?;
    let train = training_frames(orbit_dir, orbit.frames.len(), holdout)?;
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
        DmtetError::Coarse(_) => PipelineError::input(&coarse_path, e.to_string()),
        other => other.into(),
    })?;
    if let Some(guidance) = guidance {
        refiner = refiner.with_guidance(guidance);
    }
    let setup_s = started.elapsed().as_secs_f64();
    make_folder(dir)?;
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
    save_json(&dir.join("refine.json"), &summary)?;
    Ok(summary)
}
