//! The one entry point: a [`Plan`] run through the stages of a work folder.

use std::path::{Path, PathBuf};
use std::time::Instant;

use orbitmesh_geom::bake::{decimated, low_poly};
use orbitmesh_geom::io::write_for_engines;
use orbitmesh_geom::{TriMesh, normalising_transform, read_mesh};
use orbitmesh_render::{colour_from_frames, open_rasterizer, read_orbit};
use serde::Serialize;
use serde_json::{Value, json};

use crate::error::{PipelineError, Result};
use crate::event::{Event, OnEvent, Stage};
use crate::plan::{GeneratorConfig, MeshFrame, OrbitSource, Plan};
use crate::stages::export::texture_stem;
use crate::stages::fine::{Sv3dGuide, refine_into};
use crate::stages::orbit::{orbit_fingerprint, write_orbit};
use crate::stages::prepare::{CROP_FILE, photo_frame, prepare_into};
use crate::work::{StageRun, fingerprint, lock_work_folder};

/// What a run made: the exported mesh (in the plan's frame, also written to the plan's output
/// file if it names one) and the stage folders it came from.
#[derive(Debug)]
pub struct Outputs {
    pub mesh: TriMesh,
    pub prepare: Option<PathBuf>,
    pub orbit: PathBuf,
    pub coarse: PathBuf,
    pub fine: Option<PathBuf>,
}

/// Runs `work` into `<dir>.tmp`, then replaces `dir` with it, unless `dir` is current; reports
/// the stage started and finished, or skipped, through `on_event`, which `work` is given to
/// report its own progress through. With `resume`, `work` goes on in what an interrupted run of
/// the same fingerprint left in `<dir>.tmp` (its checkpoints), else it starts in an empty one.
pub fn run_stage(
    dir: &Path,
    stage: Stage,
    fingerprint: &Value,
    outputs: &[&str],
    resume: bool,
    on_event: OnEvent<'_>,
    work: impl FnOnce(&Path, OnEvent<'_>) -> Result<Value>,
) -> Result<()> {
    let begin = if resume {
        StageRun::resume_or_begin
    } else {
        StageRun::begin
    };
    let Some(run) = begin(dir, stage.name(), fingerprint, outputs)? else {
        on_event(&Event::StageSkipped { stage });
        return Ok(());
    };
    on_event(&Event::StageStarted { stage });
    let details = work(run.path(), on_event)?;
    on_event(&Event::Publishing { stage });
    let seconds = run.publish(details)?;
    on_event(&Event::StageFinished { stage, seconds });
    Ok(())
}

/// The fingerprint of a stage whose settings are `settings` and whose inputs are `inputs`.
fn stage_fingerprint(settings: &impl Serialize, inputs: &[PathBuf]) -> Result<Value> {
    let inputs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    fingerprint(settings, &inputs)
}

/// Runs `plan` in the work folder `work` (made if need be, locked for the run): each stage
/// whose settings and inputs are unchanged since it last finished is skipped, the others run in
/// order, reporting through `on_event`, which can stop the run at a step (leaving the folder
/// resumable). Then the export: the mesh simplified to the budget, placed in the plan's frame,
/// written whole or not at all.
pub fn run(plan: &Plan, work: &Path, on_event: OnEvent<'_>) -> Result<Outputs> {
    let invalid = |message: &str| PipelineError::Invalid(message.to_string());
    if plan.photo.is_none() && matches!(plan.orbit, OrbitSource::Generate(_)) {
        return Err(invalid("a generated orbit needs a photo"));
    }
    if plan.photo.is_none() && plan.export.frame == MeshFrame::Input {
        return Err(invalid("the photo's frame needs a photo"));
    }
    plan.export.check()?;
    crate::output::make_folder(work)?;
    let _lock = lock_work_folder(work)?;

    let prepare_dir = work.join("prepare");
    let prepared = prepare_dir.join("prepared.png");
    if let Some(photo) = &plan.photo {
        let mut inputs = vec![photo.image.clone()];
        inputs.extend(photo.options.mask.clone());
        // No paths: the photo's and the mask's bytes are the inputs.
        let settings = json!({
            "size": photo.options.size, "fill": photo.options.fill,
            "mask": photo.options.mask.is_some(), "segmenter": photo.options.segmenter.name(),
        });
        run_stage(
            &prepare_dir,
            Stage::Prepare,
            &stage_fingerprint(&settings, &inputs)?,
            &["prepared.png", CROP_FILE],
            false,
            on_event,
            |dir, on_event| {
                prepare_into(&photo.image, &photo.options, photo.fell_back, dir, on_event)
            },
        )?;
    }

    let rasterizer = open_rasterizer(plan.device)?;
    let orbit_dir = work.join("orbit");
    run_stage(
        &orbit_dir,
        Stage::Orbit,
        &orbit_fingerprint(
            &plan.orbit,
            &plan.orbit_config,
            Some(&prepare_dir.join("stage.json")),
        )?,
        &["transforms.json"],
        false,
        on_event,
        |dir, on_event| {
            write_orbit(
                &plan.orbit,
                &plan.orbit_config,
                Some(&prepared),
                &rasterizer,
                dir,
                on_event,
            )
        },
    )?;

    let coarse_dir = work.join("coarse");
    run_stage(
        &coarse_dir,
        Stage::Coarse,
        &stage_fingerprint(&plan.coarse, &[orbit_dir.join("stage.json")])?,
        &[plan.coarse.output()],
        plan.coarse.checkpoints(),
        on_event,
        |dir, on_event| plan.coarse.run(&orbit_dir, dir, on_event),
    )?;

    let fine_dir = work.join("fine");
    if let Some(fine) = &plan.fine {
        // With SV3D's weights, the fine stage ends with its score distillation, as SV3D's own
        // does.
        let guide = match plan.sv3d() {
            Some(GeneratorConfig::Sv3d {
                weights,
                seed,
                precision,
                ..
            }) => Some(Sv3dGuide {
                weights: weights.clone(),
                config: None,
                image: prepared.clone(),
                precision: *precision,
                seed: *seed,
            }),
            _ => None,
        };
        // The weights' bytes reach this fingerprint through the orbit stage's record.
        let settings = json!({ "fine": fine, "guidance": guide.as_ref().map(|g| g.precision) });
        run_stage(
            &fine_dir,
            Stage::Fine,
            &stage_fingerprint(&settings, &[coarse_dir.join("stage.json")])?,
            &["fine.obj"],
            false,
            on_event,
            |dir, on_event| {
                refine_into(
                    &coarse_dir,
                    &orbit_dir,
                    fine.refine.clone(),
                    &[],
                    plan.device,
                    fine.texture,
                    guide.as_ref(),
                    dir,
                    on_event,
                )
            },
        )?;
    }

    let started = Instant::now();
    on_event(&Event::StageStarted {
        stage: Stage::Export,
    });
    let faces = plan.export.faces;
    let bake = plan.export.engine.bake.as_ref();
    let mut high = match &plan.fine {
        Some(_) => read_mesh(&fine_dir.join("fine.obj"))?.mesh,
        None => read_mesh(&coarse_dir.join(plan.coarse.output()))?.mesh,
    };
    let mut mesh = if plan.fine.is_none() && bake.is_none() {
        // The coarse mesh has no colours: the decimated one is coloured from the frames.
        let mut mesh = decimated(&high, faces)?;
        mesh.colors = Some(colour_from_frames(&mesh, &read_orbit(&orbit_dir)?)?);
        mesh
    } else {
        if plan.fine.is_none() {
            high.colors = Some(colour_from_frames(&high, &read_orbit(&orbit_dir)?)?);
        }
        // The baked textures stay in the work folder: the mesh returned names them.
        let textures = work.join("export");
        if bake.is_some() {
            crate::output::make_folder(&textures)?;
        }
        low_poly(
            &high,
            faces,
            bake,
            &textures,
            &texture_stem(plan.export.out.as_deref()),
        )?
    };
    match plan.export.frame {
        MeshFrame::Object => mesh.transform(&normalising_transform(&mesh.bounds())),
        MeshFrame::Input => mesh.transform(&photo_frame(
            &prepare_dir,
            plan.orbit_config.input_elevation_deg,
        )?),
        MeshFrame::Orbit => {}
    }
    mesh.place(plan.export.size, plan.export.pivot);
    if let Some(out) = &plan.export.out {
        on_event(&Event::Publishing {
            stage: Stage::Export,
        });
        write_for_engines(out, &mesh, &plan.export.engine)?;
    }
    on_event(&Event::StageFinished {
        stage: Stage::Export,
        seconds: started.elapsed().as_secs_f64(),
    });
    Ok(Outputs {
        mesh,
        prepare: plan.photo.as_ref().map(|_| prepare_dir),
        orbit: orbit_dir,
        coarse: coarse_dir,
        fine: plan.fine.as_ref().map(|_| fine_dir),
    })
}
