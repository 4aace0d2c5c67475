//! The coarse stage: the visual hull of the orbit's silhouettes, or the hash-grid NeRF trained
//! on its frames (checkpointed in its folder, so an interrupted stage goes on from there).

use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use orbitmesh_geom::write_mesh;
use orbitmesh_nerf::RadianceField;
use orbitmesh_nerf::train::{TrainConfig, TrainFrame, TrainState, Trainer, render_depth};
use orbitmesh_nerf::{
    DepthView, HullOptions, carved_cells, density_grid, depth_carving, field_mesh, silhouette_grid,
    visual_hull,
};
use orbitmesh_render::{Projection, read_orbit};
use serde::Serialize;
use serde_json::{Value, json};

use crate::error::{PipelineError, Result};
use crate::event::{Event, Flow, OnEvent, Stage};
use crate::output::{encode_png, make_folder, save, save_json};
use crate::work::same_fingerprint;

/// Carves the hull of the orbit in `orbit_dir` into `dir`/hull.obj. Returns what the stage
/// record keeps.
pub fn hull_into(orbit_dir: &Path, opts: &HullOptions, dir: &Path) -> Result<Value> {
    let orbit = read_orbit(orbit_dir)?;
    let (_, mesh) = visual_hull(&orbit, opts)?;
    make_folder(dir)?;
    write_mesh(&dir.join("hull.obj"), &mesh)?;
    Ok(json!({
        "method": "visual hull (space carving of the frames' alpha, marching cubes)",
        "frames": orbit.frames.len(),
        "vertices": mesh.positions.len(),
        "faces": mesh.faces.len(),
    }))
}

/// Everything `nerf_into` needs besides the folders.
pub struct NerfSettings {
    pub config: TrainConfig,
    pub holdout: Vec<usize>,
    pub mesh_resolution: usize,
    pub background: [f32; 3],
    pub fresh: bool,
    /// Hash-grid size; None fits it to the frames (see [`grid_for_frames`]).
    pub table_log2: Option<u32>,
    pub finest_resolution: Option<u32>,
}

/// The hash table size and finest level for frames of `side` pixels: instant-ngp's anchor (2^19,
/// 2048) for its 800² scenes and SV3D's 576² orbits, smaller for small orbits.
pub fn grid_for_frames(side: u32) -> (u32, u32) {
    let log2 = if side >= 512 { 19 } else { 17 };
    (log2, (4 * side).clamp(128, 2048))
}

impl NerfSettings {
    /// The fast preset (about 90 s of training on 2 cores, a 192³ mesh grid) or the default one
    /// (about 5 min, 256³).
    pub fn new(fast: bool) -> Self {
        let mut config = TrainConfig::default();
        let mesh_resolution = if fast {
            config.time_budget_s = 90.0;
            config.max_steps = 1000;
            192
        } else {
            256
        };
        NerfSettings {
            config,
            holdout: Vec::new(),
            mesh_resolution,
            background: [1.0; 3],
            fresh: false,
            table_log2: None,
            finest_resolution: None,
        }
    }
}

fn write_npy(path: &Path, dims: [usize; 3], values: &[f32]) -> Result<()> {
    // NumPy's .npy v1.0: magic, header length, a dict padded so the data starts 64-aligned.
    // The grid is x fastest, so in C order its shape is (z, y, x).
    let dict = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}, {}), }}",
        dims[2], dims[1], dims[0]
    );
    let unpadded = 10 + dict.len() + 1;
    let header = format!(
        "{dict}{}\n",
        " ".repeat(unpadded.next_multiple_of(64) - unpadded)
    );
    let mut bytes = Vec::with_capacity(10 + header.len() + values.len() * 4);
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    save(path, &bytes)?;
    Ok(())
}

fn save_field(field: &RadianceField, path: &Path) -> Result<()> {
    // burn writes the file itself: write beside it and rename, so no half-written record remains.
    let tmp = path.with_extension("bpk.tmp");
    field
        .clone()
        .save_file(&tmp)
        .map_err(|e| PipelineError::input(&tmp, format!("cannot save the field: {e:?}")))?;
    let written = if tmp.exists() {
        tmp.clone()
    } else {
        tmp.with_extension("tmp.bpk")
    };
    std::fs::rename(&written, path)
        .map_err(PipelineError::io(path, "cannot move the field into place"))
}

/// How the coarse mesh is made. Serialised into the stage's fingerprint as `{"method":
/// "hull", "resolution": 192}` or `{"method": "nerf", "fast": true, "seconds": null}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum CoarseMethod {
    /// The visual hull at this many grid points per side (`hull.obj`).
    Hull { resolution: usize },
    /// The NeRF with the fast or default preset, optionally another time budget (`nerf.obj`).
    Nerf { fast: bool, seconds: Option<f64> },
}

impl CoarseMethod {
    /// Whether the method checkpoints its work in its folder (the NeRF does, every 30 s), so an
    /// interrupted stage goes on from there.
    pub fn checkpoints(&self) -> bool {
        matches!(self, CoarseMethod::Nerf { .. })
    }

    /// The stage's output file.
    pub fn output(&self) -> &'static str {
        match self {
            CoarseMethod::Hull { .. } => "hull.obj",
            CoarseMethod::Nerf { .. } => "nerf.obj",
        }
    }

    /// Runs the stage into `dir`, reporting through `on_event`; returns its summary.
    pub fn run(&self, orbit_dir: &Path, dir: &Path, on_event: OnEvent<'_>) -> Result<Value> {
        match *self {
            CoarseMethod::Hull { resolution } => {
                let opts = HullOptions {
                    resolution,
                    ..Default::default()
                };
                hull_into(orbit_dir, &opts, dir)
            }
            CoarseMethod::Nerf { fast, seconds } => {
                let mut settings = NerfSettings::new(fast);
                if let Some(s) = seconds {
                    settings.config.time_budget_s = s;
                }
                nerf_into(orbit_dir, &settings, &Device::flex(), dir, on_event)
            }
        }
    }
}

/// Trains on the orbit in `orbit_dir` and writes the field, density grid and mesh into `dir`,
/// reporting each step through `on_event`; a stop there checkpoints first, so a rerun into the
/// same `dir` resumes from that step. Returns the summary written to `nerf.json`.
pub fn nerf_into(
    orbit_dir: &Path,
    settings: &NerfSettings,
    device: &Device,
    dir: &Path,
    on_event: OnEvent<'_>,
) -> Result<Value> {
    let orbit = read_orbit(orbit_dir)?;
    let n = orbit.frames.len();
    let train = training_frames(orbit_dir, n, &settings.holdout)?;
    let side = orbit.frames[0]
        .image
        .width()
        .max(orbit.frames[0].image.height());
    let (log2, finest) = grid_for_frames(side);
    let mut config = settings.config.clone();
    config.field.grid.log2_table = settings.table_log2.unwrap_or(log2);
    config.field.grid.finest_resolution = settings.finest_resolution.unwrap_or(finest);
    let config = &config;
    let without_alpha = orbit.frames.iter().filter(|f| !f.has_alpha).count();
    if without_alpha > 0 {
        on_event(&Event::Warning {
            stage: Some(Stage::Coarse),
            message: format!(
                "{without_alpha} of {n} frames have no alpha: they are trained against the \
                 background colour {:?}, and nothing is carved from silhouettes",
                settings.background
            ),
        });
    }
    let r = config.occupancy_resolution;
    let allowed = carved_cells(&orbit, &train, r).unwrap_or_else(|| vec![true; r * r * r]);
    if !allowed.iter().any(|a| *a) {
        return Err(PipelineError::input(
            orbit_dir,
            "the silhouettes carve everything away (do the cameras look at the object?)",
        ));
    }
    let frames = TrainFrame::from_orbit(&orbit);
    let mut trainer = Trainer::new(
        config.clone(),
        frames,
        train.clone(),
        allowed,
        settings.background,
        device,
    )?;

    make_folder(dir)?;
    let checkpoint = dir.join("checkpoint");
    // The budgets are left out: a rerun with a larger budget continues the same training.
    let mut model = config.clone();
    model.max_steps = 0;
    model.time_budget_s = 0.0;
    let fingerprint = json!({ "orbit": orbit_dir, "config": model, "holdout": settings.holdout });
    if !settings.fresh {
        resume_from(&checkpoint, &fingerprint, &mut trainer, on_event)?;
    }

    let started = Instant::now();
    let trained_before = trainer.state.elapsed_s;
    let mut last_checkpoint = Instant::now();
    let mut samples = 0usize;
    let mut smoothed = f32::NAN;
    while !trainer.is_done() {
        let report = trainer.step();
        samples += report.samples;
        if report.loss.is_finite() {
            smoothed = if smoothed.is_finite() {
                0.95 * smoothed + 0.05 * report.loss
            } else {
                report.loss
            };
        }
        // The step and time budgets race: show whichever ends training first.
        let by_time = config.time_budget_s - report.elapsed.as_secs_f64();
        let by_steps = (config.max_steps - report.step) as f64 * report.elapsed.as_secs_f64()
            / report.step.max(1) as f64;
        let loss = Some(f64::from(smoothed)).filter(|l| l.is_finite());
        let flow = on_event(&Event::Step {
            stage: Stage::Coarse,
            step: report.step as u64,
            total: config.max_steps as u64,
            loss,
            psnr: loss.map(orbitmesh_nerf::train::psnr),
            detail: Some(format!(
                "{} rays, {} samples, {:.0} s left",
                report.rays,
                report.samples,
                by_time.min(by_steps).max(0.0)
            )),
        });
        if flow == Flow::Stop {
            write_checkpoint(&checkpoint, &fingerprint, &trainer)?;
        }
        flow.proceed()?;
        if last_checkpoint.elapsed().as_secs() >= 30 {
            write_checkpoint(&checkpoint, &fingerprint, &trainer)?;
            last_checkpoint = Instant::now();
        }
    }
    let train_seconds = started.elapsed().as_secs_f64();
    let holdout_psnr = trainer.psnr_on(&settings.holdout, [1.0; 3]);
    write_checkpoint(&checkpoint, &fingerprint, &trainer)?;
    for i in &settings.holdout {
        // Each held-out view as the field renders it, over white, to compare with the frame.
        let frame = &trainer.frames()[*i];
        let rgba = trainer.render(*i);
        let image = image::RgbaImage::from_fn(frame.width as u32, frame.height as u32, |x, y| {
            let px = &rgba[4 * (y as usize * frame.width + x as usize)..][..4];
            let c = |v: f32| ((v + 1.0 - px[3]).clamp(0.0, 1.0) * 255.0).round() as u8;
            image::Rgba([c(px[0]), c(px[1]), c(px[2]), 255])
        });
        save(
            &dir.join(format!("holdout_{i:03}.png")),
            &encode_png(&image)?,
        )?;
    }
    let plain = trainer.device().clone().inner();
    let field = trainer.field().valid();
    let grid = density_grid(
        &field,
        &config.field,
        &trainer.grid,
        settings.mesh_resolution,
        &plain,
    );
    write_npy(&dir.join("density.npy"), grid.dims, &grid.values)?;
    // The surface is where the field's views see it, inside the frames' silhouettes: the density
    // alone dips below any iso level in places inside the object and dents the surface inward.
    let views: Vec<DepthView> = train
        .iter()
        .map(|&i| {
            let frame = &trainer.frames()[i];
            DepthView {
                projection: Projection::new(&frame.camera),
                depth: render_depth(&field, config, &trainer.grid, frame, &plain),
            }
        })
        .collect();
    let mut solid = depth_carving(&views, grid.dims[0]);
    if without_alpha == 0 {
        let hull = silhouette_grid(&orbit, &train, grid.dims[0], 0.5);
        for (s, a) in solid.values.iter_mut().zip(&hull.values) {
            *s = s.min(*a);
        }
    }
    let mesh = field_mesh(&field, &config.field, solid, &plain);
    if mesh.faces.is_empty() {
        return Err(PipelineError::input(
            dir,
            "the field's views see no solid (the training did not converge; try more --steps or \
             --seconds)",
        ));
    }
    write_mesh(&dir.join("nerf.obj"), &mesh)?;
    save_field(trainer.field(), &dir.join("field.bpk"))?;
    save_json(&dir.join("config.json"), config)?;
    let summary = json!({
        "method": "Instant-NGP hash-grid NeRF (orbitmesh-nerf), marching cubes of the space its training views see empty (depth where 5% of the light is stopped) carved from their visual hull, largest solid",
        "frames": n,
        "trained_on": train,
        "holdout": settings.holdout,
        "holdout_psnr_db": holdout_psnr.is_finite().then_some(holdout_psnr),
        "steps": trainer.state.step,
        "train_seconds_this_run": train_seconds,
        "train_seconds_total": trainer.state.elapsed_s,
        "samples_this_run": samples,
        // Over the optimisation steps alone (no checkpoints), as the peer measures.
        "samples_per_s": samples as f64 / (trainer.state.elapsed_s - trained_before).max(1e-9),
        "occupied_fraction": trainer.grid.occupied_fraction(),
        "mesh_resolution": settings.mesh_resolution,
        "vertices": mesh.positions.len(),
        "faces": mesh.faces.len(),
    });
    save_json(&dir.join("nerf.json"), &summary)?;
    Ok(summary)
}

fn write_checkpoint(dir: &Path, fingerprint: &Value, trainer: &Trainer) -> Result<()> {
    make_folder(dir)?;
    save_field(trainer.field(), &dir.join("field.bpk"))?;
    let density: Vec<u8> = trainer
        .grid
        .density
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    save(&dir.join("occupancy.f32"), &density)?;
    // Written last: a checkpoint counts only once its state names it.
    let state = json!({ "fingerprint": fingerprint, "state": trainer.state });
    save_json(&dir.join("state.json"), &state)?;
    Ok(())
}

/// Resumes `trainer` from the checkpoint in `dir` where it holds a run with this fingerprint, and
/// reports so.
fn resume_from(
    dir: &Path,
    fingerprint: &Value,
    trainer: &mut Trainer,
    on_event: OnEvent<'_>,
) -> Result<()> {
    let Ok(bytes) = std::fs::read(dir.join("state.json")) else {
        return Ok(());
    };
    let Ok(saved) = serde_json::from_slice::<Value>(&bytes) else {
        return Ok(());
    };
    if !saved
        .get("fingerprint")
        .is_some_and(|stored| same_fingerprint(stored, fingerprint))
    {
        return Ok(());
    }
    let state: TrainState = serde_json::from_value(saved["state"].clone())
        .map_err(|e| PipelineError::input(dir, format!("unreadable training state ({e})")))?;
    let path = dir.join("field.bpk");
    let field =
        trainer.field().clone().try_load_file(&path).map_err(|e| {
            PipelineError::input(&path, format!("cannot load the checkpoint: {e:?}"))
        })?;
    let density: Vec<f32> = std::fs::read(dir.join("occupancy.f32"))
        .unwrap_or_default()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    on_event(&Event::Resumed {
        stage: Stage::Coarse,
        step: state.step as u64,
        seconds: state.elapsed_s,
        from: dir.to_path_buf(),
    });
    trainer.resume(field, state, density);
    Ok(())
}

/// The frames trained or refined on: all but `holdout`, each of which must be one of the `n`
/// frames of the orbit in `orbit_dir`.
pub(crate) fn training_frames(orbit_dir: &Path, n: usize, holdout: &[usize]) -> Result<Vec<usize>> {
    if let Some(bad) = holdout.iter().find(|i| **i >= n) {
        return Err(PipelineError::input(
            orbit_dir,
            format!("--holdout {bad}: the orbit has {n} frames (0..{})", n - 1),
        ));
    }
    let train: Vec<usize> = (0..n).filter(|i| !holdout.contains(i)).collect();
    if train.is_empty() {
        return Err(PipelineError::input(
            orbit_dir,
            "--holdout leaves no frame to train on",
        ));
    }
    Ok(train)
}
