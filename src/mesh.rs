//! `orbitmesh mesh`: one photo to a mesh, through the stages in a work folder, each skipped when
//! its inputs and settings have not changed since it last finished.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use orbitmesh_pipeline::{ExportConfig, MeshFrame, OrbitSource, Photo, Plan, segmenter_device};
use orbitmesh_render::camera::SV3D_ELEVATION_DEG;
use orbitmesh_segment::PrepareOptions;

use crate::input::{EngineArgs, PlanArgs, value_enum};
use crate::interrupt;
use crate::orbit::{GeneratorArgs, OrderArg};
use crate::prepare::SegmenterArgs;
use crate::progress::Progress;

value_enum! {
    /// Where the output mesh sits.
    enum FrameArg => MeshFrame {
        /// DESIGN.md's object frame: bounding box centred at the origin, longest side 1 (or
        /// --size)
        Object,
        /// Where SV3D's input camera (radius 2, field of view 33.8° across the photo's longer
        /// side, elevation 10°, on +X) would see the object as large and as placed as the photo
        /// shows it: for a photo taken that way, as `bench`'s conditioning renders of normalised
        /// scans are, the scan's normalised frame
        Input,
    }
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
    #[command(flatten)]
    plan: PlanArgs,
    /// Grid points per side of the visual hull [default: from the preset]
    #[arg(long, value_parser = clap::value_parser!(u64).range(16..=512))]
    resolution: Option<u64>,
    /// The object's longest side in metres (units) in the output
    #[arg(long)]
    size: Option<f64>,
    /// The output's frame
    #[arg(long, value_enum, default_value = "object", conflicts_with = "frames")]
    frame: FrameArg,
    /// Face budget of the output (quadric decimation)
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(100..))]
    faces: u64,
    #[command(flatten)]
    engine: EngineArgs,
}

pub fn run(args: MeshArgs) -> Result<ExitCode> {
    // Everything that can be checked before the long work is checked first.
    let generator = args.generator.config()?;
    if args.size.is_some() && matches!(args.frame, FrameArg::Input) {
        bail!("--size rescales the object frame; --frame input keeps the photo's scale");
    }
    let work = args
        .work
        .clone()
        .unwrap_or_else(|| args.out.with_extension("work"));
    // The handler first: a test (or a user) who sees the lock may interrupt.
    interrupt::resume_hint_on_sigint(&work);

    let choice = args
        .segmenter
        .choose(|| Ok(segmenter_device(args.plan.device.into())))?;
    let photo = Photo {
        image: args.image.clone(),
        options: PrepareOptions {
            mask: args.mask.clone(),
            segmenter: choice.segmenter,
            ..Default::default()
        },
        fell_back: choice.fell_back,
    };
    let orbit = match &args.frames {
        None => OrbitSource::Generate(generator),
        Some(dir) => OrbitSource::Import {
            dir: dir.clone(),
            order: args.orbit_order.order(SV3D_ELEVATION_DEG),
        },
    };
    let overrides = args.plan.overrides(args.resolution.map(|r| r as usize));
    let export = ExportConfig {
        faces: args.faces as usize,
        frame: args.frame.into(),
        size: args.size,
        pivot: args.engine.pivot(),
        out: Some(args.out.clone()),
        engine: args.engine.options(),
    };
    let plan = Plan::new(
        args.plan.preset(),
        &overrides,
        Some(photo),
        orbit,
        export,
        args.plan.device.into(),
    );
    let started = Instant::now();
    let mut progress = Progress::new();
    let outputs = orbitmesh_pipeline::run(&plan, &work, &mut |e| {
        interrupt::hold_while_publishing(e);
        progress.on_event(e)
    })?;
    drop(progress);
    let bytes = std::fs::metadata(&args.out).map(|m| m.len()).unwrap_or(0);
    println!(
        "{}: {} vertices, {} faces, {:.1} MB, {:.1} s in all (work folder {}). {}",
        args.out.display(),
        outputs.mesh.positions.len(),
        outputs.mesh.faces.len(),
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64(),
        work.display(),
        plan.describe()
    );
    Ok(ExitCode::SUCCESS)
}
