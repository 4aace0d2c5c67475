//! The orbit stage: frames around the object, from a generator or imported.

use std::path::{Path, PathBuf};
use std::time::Instant;

use image::RgbaImage;
use orbitmesh_orbit::{
    Inflate, OrbitGenerator, OrbitOrder, OrbitProgress, Sv3dGenerator, import_frames,
};
use orbitmesh_render::Rasterizer;
use orbitmesh_render::camera::{
    self, Intrinsics, OrbitFrame, OrbitView, SV3D_FOV_DEG, SV3D_RADIUS,
};
use orbitmesh_sv3d::SampleOptions;
use serde_json::{Value, json};

use crate::error::{PipelineError, Result};
use crate::event::{Event, Flow, OnEvent, Stage};
use crate::output::{StagedFolder, encode_png, make_folder, save};
use crate::plan::{GeneratorConfig, OrbitConfig, OrbitSource, tensor_device};
use crate::work::{StageRecord, files_in, fingerprint, write_stage_record};

/// Reads a prepared image, checking it is one (square).
pub fn read_prepared(path: &Path) -> Result<RgbaImage> {
    let image = image::open(path)
        .map_err(|e| PipelineError::input(path, format!("not a readable image ({e})")))?
        .to_rgba8();
    if image.width() != image.height() {
        return Err(PipelineError::input(
            path,
            format!(
                "{}×{} is not square; make it with `orbitmesh prepare`",
                image.width(),
                image.height()
            ),
        ));
    }
    Ok(image)
}

/// Loads the generator; SV3D runs on the rasterizer's GPU when it has one, else the CPU (with a
/// warning through `on_event`).
pub fn open_generator(
    config: &GeneratorConfig,
    rasterizer: &Rasterizer,
    on_event: OnEvent<'_>,
) -> Result<Box<dyn OrbitGenerator>> {
    Ok(match config {
        GeneratorConfig::Inflate { profile } => Box::new(Inflate {
            profile: *profile,
            ..Default::default()
        }),
        GeneratorConfig::Sv3d {
            weights,
            steps,
            seed,
            decode_chunk,
            precision,
        } => {
            let options = SampleOptions {
                steps: *steps,
                seed: *seed,
                decode_chunk: *decode_chunk,
                ..Default::default()
            };
            let generator = Sv3dGenerator::load(
                weights,
                &tensor_device(rasterizer),
                precision.dtype(rasterizer),
                options,
            )?;
            if matches!(rasterizer, Rasterizer::Cpu) {
                on_event(&Event::Warning {
                    stage: Some(Stage::Orbit),
                    message: "SV3D on the CPU takes hours for one orbit; use --device gpu where \
                              there is one"
                        .to_string(),
                });
            }
            Box::new(generator)
        }
    })
}

/// The orbit stage's fingerprint: the generator's settings and the orbit's, with the bytes of
/// `prepared` (the prepared image, or in a work folder the prepare stage's record, which holds
/// the photo's hash; needed for a generated orbit only) and of SV3D's weights; for imported
/// frames, their bytes.
pub fn orbit_fingerprint(
    source: &OrbitSource,
    config: &OrbitConfig,
    prepared: Option<&Path>,
) -> Result<Value> {
    match source {
        OrbitSource::Generate(generator) => {
            let mut inputs = vec![needs_prepared(prepared)?];
            if let GeneratorConfig::Sv3d { weights, .. } = generator {
                inputs.push(weights);
            }
            fingerprint(&json!({ "generator": generator, "orbit": config }), &inputs)
        }
        OrbitSource::Import { dir, order } => {
            let files = files_in(dir)?;
            let inputs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
            let settings = json!({ "generator": "frames", "order": format!("{order:?}") });
            fingerprint(&settings, &inputs)
        }
    }
}

/// The prepared image a generated orbit needs.
fn needs_prepared(prepared: Option<&Path>) -> Result<&Path> {
    prepared
        .ok_or_else(|| PipelineError::Invalid("a generated orbit needs a prepared image".into()))
}

/// Writes the orbit of `source` into `dir`: generated from the prepared image at `prepared`
/// ([`orbit_into`]) or imported ([`import_into`]). Returns what the stage record keeps.
pub fn write_orbit(
    source: &OrbitSource,
    config: &OrbitConfig,
    prepared: Option<&Path>,
    rasterizer: &Rasterizer,
    dir: &Path,
    on_event: OnEvent<'_>,
) -> Result<Value> {
    match source {
        OrbitSource::Generate(generator) => {
            let prepared = needs_prepared(prepared)?;
            // The input is checked before the (possibly slow) generator is loaded.
            let image = read_prepared(prepared)?;
            let generator = open_generator(generator, rasterizer, on_event)?;
            orbit_into(
                prepared,
                &image,
                config,
                generator.as_ref(),
                rasterizer,
                dir,
                on_event,
            )
        }
        OrbitSource::Import { dir: from, order } => import_into(from, *order, dir, on_event),
    }
}

/// `orbitmesh orbit`'s work: the orbit of `source` written into the folder `out`, replaced whole
/// or left as it was, with the stage record the orbit stage of a run writes. Returns what the
/// record keeps and the seconds it took.
pub fn orbit_folder(
    source: &OrbitSource,
    config: &OrbitConfig,
    prepared: Option<&Path>,
    rasterizer: &Rasterizer,
    out: &Path,
    on_event: OnEvent<'_>,
) -> Result<(Value, f64)> {
    let started = Instant::now();
    let staged = StagedFolder::new(out)?;
    let details = write_orbit(
        source,
        config,
        prepared,
        rasterizer,
        staged.path(),
        on_event,
    )?;
    let seconds = started.elapsed().as_secs_f64();
    let fp = orbit_fingerprint(source, config, prepared)?;
    let record = StageRecord::new("orbit", fp, details.clone(), seconds);
    write_stage_record(staged.path(), &record)?;
    staged.publish()?;
    Ok((details, seconds))
}

/// Generates the orbit of the prepared image (read from `prepared`) into `dir`: frames,
/// cameras.json, transforms.json. Reports each part of the generation as a step (its time in the
/// detail: `UNet step 3/50 in 1.20 s`), the generator's warnings and each frame as it is written.
/// A generator cannot be stopped inside: a stop asked for at a part takes effect once it returns,
/// before any frame is written. Returns what the stage record keeps (the generator, labelled).
pub fn orbit_into(
    prepared: &Path,
    image: &RgbaImage,
    settings: &OrbitConfig,
    generator: &dyn OrbitGenerator,
    rasterizer: &Rasterizer,
    dir: &Path,
    on_event: OnEvent<'_>,
) -> Result<Value> {
    let input = OrbitView {
        elevation_deg: settings.input_elevation_deg,
        azimuth_deg: 0.0,
        radius: SV3D_RADIUS,
    };
    let views = camera::orbit(
        &camera::even_azimuths(settings.frames),
        settings.elevation_deg,
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
        .map_err(|source| PipelineError::Generator {
            path: prepared.to_path_buf(),
            source,
        })?;
    flow.proceed()?;
    for w in generated.warnings {
        on_event(&Event::Warning {
            stage: Some(Stage::Orbit),
            message: w,
        });
    }
    make_folder(dir)?;
    let mut frames = Vec::new();
    for (k, (img, view)) in generated.frames.iter().zip(&views).enumerate() {
        let file = write_frame(dir, img, k, on_event)?;
        frames.push(OrbitFrame {
            file,
            view: Some(*view),
            camera: view.camera(intrinsics),
        });
    }
    camera::write_cameras_json(&dir.join("cameras.json"), &frames)?;
    camera::write_transforms_json(&dir.join("transforms.json"), &frames)?;
    Ok(json!({
        "generator": generator.name(),
        "description": generator.describe(),
        "rasterizer": rasterizer.name(),
        "frames": frames.len(),
    }))
}

/// Writes frame `index` of an orbit into `dir` and reports it; returns its file name.
fn write_frame(
    dir: &Path,
    image: &RgbaImage,
    index: usize,
    on_event: OnEvent<'_>,
) -> Result<String> {
    let file = format!("{index:03}.png");
    let path = dir.join(&file);
    save(&path, &encode_png(image)?)?;
    on_event(&Event::Frame {
        stage: Stage::Orbit,
        index,
        path,
    });
    Ok(file)
}

/// Imports an orbit made elsewhere from `from` into `dir` (frames with alpha, camera files),
/// reporting each frame as it is written.
pub fn import_into(
    from: &Path,
    order: OrbitOrder,
    dir: &Path,
    on_event: OnEvent<'_>,
) -> Result<Value> {
    let imported = import_frames(from, order)?;
    make_folder(dir)?;
    let mut frames = Vec::new();
    for (k, f) in imported.iter().enumerate() {
        let file = write_frame(dir, &f.image, k, on_event)?;
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
    Ok(json!({
        "generator": "frames",
        "description": "frames: an orbit imported from existing images",
        "from": from,
        "sources": sources,
    }))
}
