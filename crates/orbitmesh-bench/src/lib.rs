//! The benchmark protocol of DESIGN.md over a GSO-layout dataset: each object's scan normalised,
//! its conditioning view (or with the oracle, its orbit) rendered, the pipeline run on it in the
//! object's folder through [`orbitmesh_pipeline::run`] (so its stage folders resume as `mesh`'s
//! do), the mesh measured against the scan by the `gso` protocol, and a report: results.csv,
//! summary.json, report.md, report.html (with 3D viewers), chamfer.png and one sheet.png per
//! object.

mod chart;
mod html;
mod pairs;
mod report;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use orbitmesh_geom::io::resolve_mesh_path;
use orbitmesh_geom::{
    EvalFrame, EvalOptions, GeomError, TriMesh, UpAxis, evaluate, normalising_transform, read_mesh,
};
use orbitmesh_orbit::{InflateProfile, OrbitOrder};
use orbitmesh_pipeline::stages::scan::{Extras, render_orbit, render_view};
use orbitmesh_pipeline::{
    Event, ExportConfig, Flow, GeneratorConfig, MeshFrame, OrbitSource, Overrides, Photo,
    PipelineError, Plan, Preset, encode_png, one_line, save, save_json,
};
use orbitmesh_render::camera::{
    self, Intrinsics, OrbitView, SV3D_ELEVATION_DEG, SV3D_FOV_DEG, SV3D_FRAMES, SV3D_RADIUS,
};
use orbitmesh_render::{
    Background, DeviceChoice, Rasterizer, RenderError, Scene, contact_sheet, open_rasterizer,
};
use orbitmesh_segment::PrepareOptions;
use serde_json::{Value, json};

pub use pairs::{PairEval, evaluate_pairs, read_pairs};
pub use report::{Row, Summary, merge};

/// What can stop a bench as a whole (one object's failure is its row's error, not this).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Mesh(#[from] GeomError),
    #[error(transparent)]
    Render(#[from] RenderError),
    /// A dataset, a shard's output or a report file that is not what it should be.
    #[error("{}: {message}", path.display())]
    Input { path: PathBuf, message: String },
    #[error("the Chamfer chart: {0}")]
    Chart(String),
}

impl BenchError {
    fn input(path: &Path, message: impl Into<String>) -> Self {
        BenchError::Input {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

pub type Result<T, E = BenchError> = std::result::Result<T, E>;

/// How a bench runs.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub preset: Preset,
    pub overrides: Overrides,
    /// Renders of the scan as the orbit (the 3D stages alone), instead of the inflate orbit of
    /// a rendered conditioning view.
    pub oracle: bool,
    /// The inflate orbit's depth profile.
    pub profile: InflateProfile,
    /// The scans' up axis (GSO: Z).
    pub up: UpAxis,
    /// Surface samples per mesh for the metrics.
    pub points: usize,
    pub device: DeviceChoice,
    /// Objects benchmarked at once; the cores are shared out among them.
    pub jobs: usize,
    /// Only shard I of N (objects sorted by name, every N-th from the I-th).
    pub shard: Option<(usize, usize)>,
}

impl BenchConfig {
    /// The orbit and coarse stage, in words, for the report.
    pub fn mode(&self) -> String {
        let orbit = if self.oracle {
            "oracle (renders of the scans)".to_string()
        } else {
            format!(
                "inflate, {} profile (weight-free baseline)",
                self.profile.name()
            )
        };
        let coarse = if self.overrides.coarse.is_nerf(!self.oracle) {
            "the hash-grid NeRF"
        } else {
            "the visual hull"
        };
        format!("{orbit}; coarse stage: {coarse}")
    }
}

/// What a bench reports as it goes.
#[derive(Debug)]
pub enum BenchEvent<'a> {
    /// The objects to run (after sharding).
    Objects(usize),
    /// An object starts.
    Started(&'a str),
    /// An object is done: measured, or failed (its row says why).
    Finished(&'a Row),
    /// What the user should know about an object.
    Warning { object: &'a str, message: &'a str },
}

/// The objects of a dataset: its sub-folders that hold a mesh, by name.
pub fn objects(dataset: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(dataset)
        .map_err(|e| BenchError::input(dataset, format!("cannot read the dataset folder ({e})")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .filter(|p| p.join("meshes/model.obj").is_file() || p.join("model.obj").is_file())
        .map(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, p)
        })
        .collect();
    found.sort();
    if found.is_empty() {
        return Err(BenchError::input(
            dataset,
            "no object folders (<name>/meshes/model.obj) in it",
        ));
    }
    Ok(found)
}

/// Runs the bench of `dataset` into `out` (one folder per object, then the report), reporting
/// through `on_event`. Objects with a metrics.json are not run again; a failing object is
/// recorded with its error and the bench goes on.
pub fn run_bench(
    dataset: &Path,
    out: &Path,
    config: &BenchConfig,
    on_event: &(dyn Fn(BenchEvent) + Sync),
) -> Result<Summary> {
    let mut objects = objects(dataset)?;
    if let Some((i, n)) = config.shard {
        objects = objects.into_iter().skip(i).step_by(n).collect();
    }
    orbitmesh_pipeline::make_folder(out)?;
    on_event(BenchEvent::Objects(objects.len()));
    // One rasterizer for the whole bench: opening a GPU device is not free.
    let rasterizer = open_rasterizer(config.device)?;
    // `jobs` objects at once, each on its share of the cores, so the machine is never
    // oversubscribed; rows keep the objects' order whatever finishes first.
    let jobs = config.jobs.clamp(1, objects.len());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_job = (cores / jobs).max(1);
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<Row>>> = objects.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(per_job).build();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some((name, path)) = objects.get(i) else {
                        break;
                    };
                    on_event(BenchEvent::Started(name));
                    let row = match &pool {
                        Ok(pool) => pool.install(|| {
                            bench_one(name, path, &out.join(name), config, &rasterizer, on_event)
                        }),
                        Err(e) => Row {
                            name: name.clone(),
                            values: Err(format!("no thread pool: {e}")),
                        },
                    };
                    on_event(BenchEvent::Finished(&row));
                    if let Ok(mut slot) = slots[i].lock() {
                        *slot = Some(row);
                    }
                }
            });
        }
    });
    let rows: Vec<Row> = slots
        .into_iter()
        .filter_map(|s| s.into_inner().ok().flatten())
        .collect();
    report::write_report(out, &rows, &config.mode())
}

/// One object: its earlier metrics.json if it has one, else a run.
fn bench_one(
    name: &str,
    object: &Path,
    dir: &Path,
    config: &BenchConfig,
    rasterizer: &Rasterizer,
    on_event: &(dyn Fn(BenchEvent) + Sync),
) -> Row {
    let warn = |message: &str| {
        on_event(BenchEvent::Warning {
            object: name,
            message,
        })
    };
    let done = std::fs::read(dir.join("metrics.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    let result = match done {
        Some(m) => Ok(m),
        None => run_object(object, dir, config, rasterizer, &warn).map_err(|e| one_line(&e)),
    };
    Row::new(name, result)
}

/// The oracle orbit of a (normalised) scan: SV3D's 21 views, `side`² pixels, with alpha, as an
/// orbit folder in `dir`.
pub fn render_oracle_orbit(
    scene: &Scene,
    side: u32,
    rasterizer: &Rasterizer,
    dir: &Path,
) -> orbitmesh_pipeline::Result<()> {
    let views = camera::orbit(
        &camera::even_azimuths(SV3D_FRAMES),
        SV3D_ELEVATION_DEG,
        SV3D_RADIUS,
    );
    let k = Intrinsics::from_fov(SV3D_FOV_DEG, side, side);
    render_orbit(
        scene,
        &views,
        k,
        Background::Transparent,
        rasterizer,
        dir,
        Extras::default(),
        || {},
    )?;
    Ok(())
}

/// One object of the benchmark: the scan normalised, its conditioning view (or, with
/// `--oracle`, its orbit) rendered as the plan's input, the pipeline run in the object's folder
/// (its stage folders resume as `mesh`'s do), the mesh measured against the scan.
fn run_object(
    object: &Path,
    dir: &Path,
    config: &BenchConfig,
    rasterizer: &Rasterizer,
    warn: &dyn Fn(&str),
) -> Result<Value> {
    let started = Instant::now();
    let file = read_mesh(&resolve_mesh_path(object)?)?;
    for w in &file.warnings {
        warn(w);
    }
    let mut scan = file.mesh;
    scan.transform(&config.up.to_z_up());
    let mut normalised = scan.clone();
    normalised.transform(&normalising_transform(&normalised.bounds()));
    let mut warnings = Vec::new();
    let scene = Scene::new(&normalised, &mut warnings)?;
    let res = config.preset.frame_side();
    let input_view = OrbitView {
        elevation_deg: SV3D_ELEVATION_DEG,
        azimuth_deg: 0.0,
        radius: SV3D_RADIUS,
    };
    // The oracle has no conditioning image: its orbit's first frame is the view it would be.
    let (photo, orbit, frame, input, generator) = if config.oracle {
        let oracle = dir.join("oracle");
        render_oracle_orbit(&scene, res, rasterizer, &oracle)?;
        let orbit = OrbitSource::Import {
            dir: oracle.clone(),
            order: OrbitOrder::Transforms,
        };
        // An oracle orbit is in the scan's normalised frame already.
        (
            None,
            orbit,
            MeshFrame::Orbit,
            oracle.join("000.png"),
            "oracle: renders of the scan".to_string(),
        )
    } else {
        let input_dir = dir.join("input");
        let k = Intrinsics::from_fov(SV3D_FOV_DEG, 576, 576);
        render_orbit(
            &scene,
            &[input_view],
            k,
            Background::Colour([1.0; 3]),
            rasterizer,
            &input_dir,
            Extras::default(),
            || {},
        )?;
        let photo = Photo {
            image: input_dir.join("000.png"),
            options: PrepareOptions::default(),
            fell_back: false,
        };
        let orbit = OrbitSource::Generate(GeneratorConfig::Inflate {
            profile: config.profile,
        });
        // The benchmark knows the conditioning camera, so the mesh goes where that camera sees
        // the object, which is the scan's normalised frame.
        (
            Some(photo),
            orbit,
            MeshFrame::Input,
            input_dir.join("000.png"),
            format!(
                "inflate ({} profile): the weight-free baseline",
                config.profile.name()
            ),
        )
    };
    let export = ExportConfig {
        faces: 100_000,
        frame,
        size: None,
        pivot: None,
        out: None,
        engine: Default::default(),
    };
    let plan = Plan::new(
        config.preset,
        &config.overrides,
        photo,
        orbit,
        export,
        config.device,
    );
    // Only the warnings reach the user: the bench's progress counts objects.
    let outputs = orbitmesh_pipeline::run(&plan, dir, &mut |e| {
        if let Event::Warning { message, .. } = e {
            warn(message);
        }
        Flow::Continue
    })?;
    let mesh = outputs.mesh;
    write_sheet(dir, &scene, &mesh, &input, &outputs.orbit, rasterizer)?;
    html::write_object_glbs(dir, &normalised, &mesh)?;
    let opts = EvalOptions {
        points: config.points,
        frame: EvalFrame::PredictionNormalised,
        ..Default::default()
    };
    let report = evaluate(&mesh, &scan, &opts);
    let m = &report.metrics;
    let metrics = json!({
        "object": object,
        "orbit": generator,
        "coarse": plan.coarse,
        "fine": plan.fine.as_ref().map_or("none".to_string(), |f| format!("DMTet, {} steps", f.refine.steps)),
        "chamfer": m.points.chamfer,
        "chamfer_l2_squared": m.points.chamfer_l2_squared,
        "fscore@0.01": m.points.fscores[0].fscore,
        "fscore@0.02": m.points.fscores[1].fscore,
        "fscore@0.05": m.points.fscores[2].fscore,
        "volume_iou": m.volume_iou,
        "normal_consistency": m.points.normal_consistency,
        "seconds": started.elapsed().as_secs_f64(),
        "warnings": warnings,
    });
    save_json(&dir.join("metrics.json"), &metrics)?;
    Ok(metrics)
}

/// sheet.png: the orbit the 3D stage saw, the scan and our mesh from the same six cameras.
fn write_sheet(
    dir: &Path,
    scan: &Scene,
    mesh: &TriMesh,
    input: &Path,
    orbit_dir: &Path,
    rasterizer: &Rasterizer,
) -> Result<()> {
    const VIEWS: usize = 6;
    let ours = Scene::new(mesh, &mut Vec::new())?;
    let k = Intrinsics::from_fov(SV3D_FOV_DEG, 160, 160);
    let blank = || image::RgbaImage::from_pixel(160, 160, image::Rgba([255; 4]));
    let picture = image::open(input)
        .map_err(|e| BenchError::input(input, format!("the input image ({e})")))?
        .to_rgba8();
    // Rows: the input then the orbit; the scan; our mesh, each from the same six azimuths.
    let mut cells = vec![(picture, "input".to_string())];
    for i in 0..VIEWS {
        // Orbit frames 0, 3, 7, … of 21, and cameras at the same azimuths.
        let frame = i * 21 / VIEWS;
        let picture = image::open(orbit_dir.join(format!("{frame:03}.png")))
            .map_err(|e| BenchError::input(orbit_dir, format!("orbit frame {frame} ({e})")))?
            .to_rgba8();
        cells.push((picture, format!("orbit {frame}")));
    }
    for (label, scene) in [("scan", scan), ("ours", &ours)] {
        cells.push((blank(), String::new()));
        for i in 0..VIEWS {
            let view = OrbitView {
                elevation_deg: 10.0,
                azimuth_deg: 360.0 * (i * 21 / VIEWS) as f64 / 21.0,
                radius: SV3D_RADIUS,
            };
            let picture = render_view(
                scene,
                &view.camera(k),
                Background::Colour([1.0; 3]),
                rasterizer,
            )?;
            cells.push((picture, format!("{label} {:.0}", view.azimuth_deg)));
        }
    }
    let sheet = contact_sheet(&cells, 160, Some(VIEWS as u32 + 1));
    save(&dir.join("sheet.png"), &encode_png(&sheet)?)?;
    Ok(())
}
