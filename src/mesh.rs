//! `orbitmesh mesh`: one photo to a mesh, through the stages in a work folder, each skipped when
//! its inputs and settings have not changed since it last finished.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use orbitmesh_geom::frame::normalising_transform;
use orbitmesh_geom::{read_mesh, write_mesh};
use orbitmesh_pipeline::{Event, Stage, files_in, fingerprint, lock_work_folder};
use orbitmesh_render::{colour_from_frames, open_rasterizer, read_orbit};
use orbitmesh_segment::PrepareOptions;
use serde_json::json;

use crate::input::{CoarseArg, DeviceArg, Preset, parse_seconds, value_name};
use crate::interrupt;
use crate::nerf::CoarseMethod;
use crate::orbit::{
    GeneratorArgs, OrbitSettings, OrderArg, import_into, orbit_into, read_prepared,
};
use crate::prepare::{CROP_FILE, SegmenterArgs, photo_frame, prepare_into};
use crate::progress::Progress;
use crate::refine::{Sv3dGuide, refine_into};
use crate::stage::run_stage;

/// Where the output mesh sits.
#[derive(Clone, Copy, ValueEnum)]
enum FrameArg {
    /// DESIGN.md's object frame: bounding box centred at the origin, longest side 1 (or --size)
    Object,
    /// Where SV3D's input camera (radius 2, field of view 33.8° across the photo's longer side,
    /// elevation 10°, on +X) would see the object as large and as placed as the photo shows it:
    /// for a photo taken that way, as `bench`'s conditioning renders of normalised scans are,
    /// the scan's normalised frame
    Input,
}

#[derive(Args)]
#[command(
    after_help = "Stages, each in its own folder of the work folder: prepare (the photo \
to SV3D's input), orbit (frames around the object: the weight-free `inflate` baseline by default, SV3D with \
--generator sv3d --weights FILE), \
coarse (the visual hull of those frames, or with --coarse nerf, the default for SV3D's and imported \
orbits, the hash-grid NeRF of `orbitmesh nerf`), fine (the DMTet refinement of `orbitmesh refine`, textured; --fine-steps 0 skips it and \
colours the coarse mesh from the frames), then export. Rerunning skips every stage whose inputs and \
settings are unchanged."
)]
pub struct MeshArgs {
    /// The photo (PNG, JPEG or WebP) of one object
    image: PathBuf,
    /// Output mesh: .glb, .obj or .ply
    #[arg(short, long)]
    out: PathBuf,
    /// Work folder for the stages [default: OUT with the extension .work]
    #[arg(long)]
    work: Option<PathBuf>,
    /// A mask image (white = object) instead of alpha or the segmenter
    #[arg(long)]
    mask: Option<PathBuf>,
    #[command(flatten)]
    segmenter: SegmenterArgs,
    /// Use the orbit in this folder (e.g. the official SV3D code's frames) instead of generating
    /// one
    #[arg(long, conflicts_with_all = ["generator", "weights"])]
    frames: Option<PathBuf>,
    #[command(flatten)]
    generator: GeneratorArgs,
    /// How --frames are posed
    #[arg(long, value_enum, default_value = "sv3d")]
    orbit_order: OrderArg,
    /// Where to rasterize
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
    /// How much work each stage does
    #[arg(long, value_enum, default_value = "default")]
    preset: Preset,
    /// The coarse stage's method
    #[arg(long, value_enum, default_value = "auto")]
    coarse: CoarseArg,
    /// Training time of the NeRF in seconds [default: the preset's: 90 (fast), 300 (default),
    /// 600 (best)]
    #[arg(long, value_parser = parse_seconds)]
    nerf_seconds: Option<f64>,
    /// Grid points per side of the visual hull [default: from the preset]
    #[arg(long, value_parser = clap::value_parser!(u64).range(16..=512))]
    resolution: Option<u64>,
    /// The object's longest side in metres (units) in the output
    #[arg(long)]
    size: Option<f64>,
    /// The output's frame
    #[arg(long, value_enum, default_value = "object", conflicts_with = "frames")]
    frame: FrameArg,
    /// Steps of the DMTet fine stage; 0 skips it and exports the coarse mesh [default: 150
    /// (fast), 600 (default), 1200 (best)]
    #[arg(long)]
    fine_steps: Option<usize>,
    /// Face budget of the output (quadric decimation)
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(100..))]
    faces: u64,
}

/// Side of the fine stage's texture in `mesh`.
const FINE_TEXTURE: u32 = 1024;

pub fn run(args: MeshArgs) -> Result<ExitCode> {
    // Everything that can be checked before the long work is checked first.
    let ext = args
        .out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_lowercase);
    if !matches!(ext.as_deref(), Some("glb" | "obj" | "ply")) {
        bail!(
            "{}: the output must be .glb, .obj or .ply",
            args.out.display()
        );
    }
    args.generator.check()?;
    let parent = match args.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        bail!("{}: no such folder for the output", parent.display());
    }
    if args.out.is_dir() {
        bail!("{}: is a folder, not a mesh file", args.out.display());
    }
    // The output is written last: a folder that cannot take it must fail now, not after the
    // long stages.
    tempfile::NamedTempFile::new_in(&parent).with_context(|| {
        format!(
            "{}: cannot write the output into this folder",
            parent.display()
        )
    })?;
    if let Some(size) = args.size
        && !(size.is_finite() && size > 0.0)
    {
        bail!("--size must be a positive number of metres");
    }
    if args.size.is_some() && matches!(args.frame, FrameArg::Input) {
        bail!("--size rescales the object frame; --frame input keeps the photo's scale");
    }
    let work = args
        .work
        .clone()
        .unwrap_or_else(|| args.out.with_extension("work"));
    std::fs::create_dir_all(&work)
        .with_context(|| format!("{}: cannot create the work folder", work.display()))?;
    // The handler first: a test (or a user) who sees the lock may interrupt.
    interrupt::resume_hint_on_sigint(&work);
    let _lock = lock_work_folder(&work)?;
    let started = Instant::now();
    let mut progress = Progress::new();
    let mut on_event = |e: &Event| progress.on_event(e);

    let prepare_dir = work.join("prepare");
    // IS-Net runs on the CPU unless a GPU is asked for: probing for one here would come before
    // the photo's checks.
    let choice = args.segmenter.choose(|| {
        Ok(match args.device {
            DeviceArg::Gpu => burn::tensor::Device::wgpu(Default::default()),
            DeviceArg::Cpu | DeviceArg::Auto => burn::tensor::Device::flex(),
        })
    })?;
    let opts = PrepareOptions {
        mask: args.mask.clone(),
        segmenter: choice.segmenter,
        ..Default::default()
    };
    let mut inputs: Vec<&Path> = vec![&args.image];
    if let Some(m) = &args.mask {
        inputs.push(m);
    }
    // No paths: the photo's and the mask's bytes are the inputs.
    let settings = json!({
        "size": opts.size, "fill": opts.fill, "mask": args.mask.is_some(),
        "segmenter": opts.segmenter.name(),
    });
    run_stage(
        &prepare_dir,
        Stage::Prepare,
        &fingerprint(&settings, &inputs)?,
        &["prepared.png", CROP_FILE],
        false,
        &mut on_event,
        |dir, on_event| prepare_into(&args.image, &opts, choice.fell_back, dir, on_event),
    )?;

    let orbit_dir = work.join("orbit");
    let orbit = OrbitSettings {
        generator: args.generator.to_json(),
        frames: 21,
        elevation: 10.0,
        input_elevation: 10.0,
        res: args.preset.frame_side(),
    };
    let rasterizer = open_rasterizer(args.device.into())?;
    let prepared = prepare_dir.join("prepared.png");
    match &args.frames {
        None => {
            let mut inputs = vec![prepare_dir.join("stage.json")];
            inputs.extend(args.generator.weights.clone());
            let inputs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
            let fp = fingerprint(&orbit.to_json(), &inputs)?;
            run_stage(
                &orbit_dir,
                Stage::Orbit,
                &fp,
                &["transforms.json"],
                false,
                &mut on_event,
                |dir, on_event| {
                    let generator = args.generator.open(&rasterizer, on_event)?;
                    orbit_into(
                        &prepared,
                        &read_prepared(&prepared)?,
                        &orbit,
                        generator.as_ref(),
                        &rasterizer,
                        dir,
                        on_event,
                    )
                },
            )?;
        }
        Some(from) => {
            let files = files_in(from)?;
            let inputs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
            let settings = json!({ "generator": "frames", "elevation_deg": orbit.elevation });
            let fp = fingerprint(&settings, &inputs)?;
            run_stage(
                &orbit_dir,
                Stage::Orbit,
                &fp,
                &["transforms.json"],
                false,
                &mut on_event,
                |dir, on_event| import_into(from, args.orbit_order, orbit.elevation, dir, on_event),
            )?;
        }
    }

    let coarse_dir = work.join("coarse");
    let coarse = args.preset.coarse(
        args.coarse,
        args.frames.is_none() && args.generator.sv3d_weights().is_none(),
        args.resolution,
        args.nerf_seconds,
    );
    let fp = fingerprint(&coarse.settings(), &[&orbit_dir.join("stage.json")])?;
    run_stage(
        &coarse_dir,
        Stage::Coarse,
        &fp,
        &[coarse.output()],
        coarse.checkpoints(),
        &mut on_event,
        |dir, on_event| coarse.run(&orbit_dir, dir, on_event),
    )?;

    let config = args.preset.fine(args.fine_steps);
    let fine_dir = work.join("fine");
    // With SV3D's weights, the fine stage ends with its score distillation, as SV3D's own does.
    let guide = args.generator.sv3d_weights().map(|weights| Sv3dGuide {
        weights: weights.to_path_buf(),
        config: None,
        image: prepared.clone(),
        precision: args.generator.precision,
        seed: args.generator.seed,
    });
    let refined = if config.steps == 0 {
        None
    } else {
        let settings = json!({
            "method": "dmtet", "config": config, "texture": FINE_TEXTURE,
            // The weights' bytes reach this fingerprint through the orbit stage's record.
            "guidance": guide.as_ref().map(|g| json!({
                "precision": value_name(g.precision),
            })),
        });
        let fp = fingerprint(&settings, &[&coarse_dir.join("stage.json")])?;
        run_stage(
            &fine_dir,
            Stage::Fine,
            &fp,
            &["fine.obj"],
            false,
            &mut on_event,
            |dir, on_event| {
                refine_into(
                    &coarse_dir,
                    &orbit_dir,
                    config,
                    &[],
                    args.device.into(),
                    FINE_TEXTURE,
                    guide.as_ref(),
                    dir,
                    on_event,
                )
            },
        )?;
        Some(fine_dir.join("fine.obj"))
    };

    let t = Instant::now();
    on_event(&Event::StageStarted {
        stage: Stage::Export,
    });
    let mut mesh = match &refined {
        Some(fine) => read_mesh(fine)?.mesh.simplified(args.faces as usize),
        None => {
            let mut mesh = read_mesh(&coarse_dir.join(coarse.output()))?
                .mesh
                .simplified(args.faces as usize);
            mesh.colors = Some(colour_from_frames(&mesh, &read_orbit(&orbit_dir)?)?);
            mesh
        }
    };
    match args.frame {
        FrameArg::Object => mesh.transform(&normalising_transform(&mesh.bounds())),
        FrameArg::Input => mesh.transform(&photo_frame(&prepare_dir, orbit.input_elevation)?),
    }
    if let Some(size) = args.size {
        mesh.scale_longest_side_to(size);
    }
    interrupt::finish_first(|| write_mesh(&args.out, &mesh))?;
    on_event(&Event::StageFinished {
        stage: Stage::Export,
        seconds: t.elapsed().as_secs_f64(),
    });
    let bytes = std::fs::metadata(&args.out).map(|m| m.len()).unwrap_or(0);
    println!(
        "{}: {} vertices, {} faces, {:.1} MB, {:.1} s in all (work folder {}). Orbit: {}; \
         coarse stage: the {}; {}.",
        args.out.display(),
        mesh.positions.len(),
        mesh.faces.len(),
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64(),
        work.display(),
        if args.frames.is_some() {
            "imported frames"
        } else if guide.is_some() {
            "SV3D"
        } else {
            "the weight-free inflate baseline"
        },
        match coarse {
            CoarseMethod::Hull(_) => "visual hull",
            CoarseMethod::Nerf { .. } => "hash-grid NeRF",
        },
        if refined.is_some() && guide.is_some() {
            "fine stage: DMTet with SV3D's score distillation, textured"
        } else if refined.is_some() {
            "fine stage: DMTet, textured"
        } else {
            "no fine stage"
        }
    );
    Ok(ExitCode::SUCCESS)
}
