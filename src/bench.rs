//! `orbitmesh bench`: the benchmark protocol of DESIGN.md over a GSO-layout dataset, one folder
//! per object, resumable, with a report.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;

use clap::{Args, Subcommand};
use image::DynamicImage;
use indicatif::{ProgressBar, ProgressStyle};
use orbitmesh_geom::frame::normalising_transform;
use orbitmesh_geom::io::resolve_mesh_path;
use orbitmesh_geom::{EvalFrame, EvalOptions, evaluate, read_mesh};
use orbitmesh_orbit::Inflate;
use orbitmesh_pipeline::{Event, Flow, OnEvent, encode_png, save};
use orbitmesh_render::camera::{self, Intrinsics, OrbitView, SV3D_FOV_DEG, SV3D_RADIUS};
use orbitmesh_render::sheet::contact_sheet;
use orbitmesh_render::{Background, Rasterizer, Scene, open_rasterizer};
use orbitmesh_segment::PrepareOptions;
use serde_json::{Value, json};

use crate::chart::chamfer_chart;
use crate::input::{CoarseArg, DeviceArg, Preset, UpArg, load_mesh, parse_seconds, value_name};
use crate::orbit::{DEFAULT_PROFILE, OrbitSettings, ProfileArg, orbit_into, read_prepared};
use crate::prepare::{photo_frame, prepare_into};
use crate::refine::refine_into;
use crate::render::{render_orbit, render_view};

#[derive(Args)]
#[command(
    after_help = "Per object: normalise the scan, render the conditioning view (576², \
white, elevation 10°, azimuth 0), run the pipeline (prepare, the inflate orbit, the visual hull), \
evaluate with the gso protocol. --oracle replaces the generated orbit with 21 renders of the scan \
itself, measuring the 3D stages alone. Without --oracle the mesh is measured where the \
conditioning camera sees the object (prepare's crop and zoom undone, `mesh --frame input`), which \
is the scan's normalised frame. Objects with a metrics.json are skipped on rerun; a failing \
object is recorded with its error and the bench goes on."
)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: Option<BenchCommand>,
    /// A GSO-layout folder: <name>/meshes/model.obj (or <name>/model.obj) per object
    #[arg(required = true)]
    dataset: Option<PathBuf>,
    /// Output folder: one folder per object, results.csv, summary.json, report.md, chamfer.png
    #[arg(long, required = true)]
    out: Option<PathBuf>,
    /// Run only shard I of N (0-based; objects sorted by name, every N-th from the I-th), to
    /// split a dataset over machines; `orbitmesh bench merge` joins the shards' outputs
    #[arg(long, value_parser = parse_shard)]
    shard: Option<(usize, usize)>,
    /// Use renders of the scan as the orbit (the 3D stages alone)
    #[arg(long)]
    oracle: bool,
    /// Depth profile of the inflate orbit's proxy
    #[arg(long, value_enum, default_value_t = DEFAULT_PROFILE, conflicts_with = "oracle")]
    profile: ProfileArg,
    /// Up axis of the scans (GSO: z)
    #[arg(long, value_enum, default_value = "z")]
    up: UpArg,
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
    /// Steps of the DMTet fine stage on each object; 0 evaluates the coarse mesh [default: 150
    /// (fast), 600 (default), 1200 (best)]
    #[arg(long)]
    fine_steps: Option<usize>,
    /// Surface samples per mesh for the metrics
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1000..))]
    points: u64,
    /// Where to rasterize
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
    /// Objects benchmarked at once; the cores are shared out among them
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=256))]
    jobs: u64,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Join the outputs of `bench --shard` runs into one report
    Merge {
        /// The shards' output folders
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Where the merged report goes
        #[arg(long)]
        out: PathBuf,
    },
}

fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let parsed = s
        .split_once('/')
        .and_then(|(i, n)| Some((i.parse::<usize>().ok()?, n.parse::<usize>().ok()?)));
    match parsed {
        Some((i, n)) if n > 0 && i < n => Ok((i, n)),
        _ => Err(format!("{s:?}: expected I/N with 0 <= I < N, e.g. 0/4")),
    }
}

/// One object's line of the report: its metrics (COLUMNS and seconds), or why it failed.
/// The SV3D paper's Chamfer figures on GSO, drawn beside ours (not measured here).
const PAPER_CHAMFER: [(&str, f64); 3] = [
    ("SV3D 3D stage, GT renders", 0.021),
    ("SV3D_p", 0.024),
    ("EscherNet", 0.042),
];

struct Row {
    name: String,
    values: Result<BTreeMap<String, f64>, String>,
}

/// The objects of a dataset: its sub-folders that hold a mesh, by name.
fn objects(dataset: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(dataset)
        .with_context(|| format!("{}: cannot read the dataset folder", dataset.display()))?
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
        bail!(
            "{}: no object folders (<name>/meshes/model.obj) in it",
            dataset.display()
        );
    }
    Ok(found)
}

fn run_object(
    object: &Path,
    dir: &Path,
    args: &BenchArgs,
    rasterizer: &Rasterizer,
    on_event: OnEvent<'_>,
) -> Result<Value> {
    let started = Instant::now();
    let scan = load_mesh(&resolve_mesh_path(object)?, args.up)?;
    let mut normalised = scan.clone();
    normalised.transform(&normalising_transform(&normalised.bounds()));
    let mut warnings = Vec::new();
    let scene = Scene::new(&normalised, &mut warnings)?;
    let res = args.preset.frame_side();
    let orbit_dir = dir.join("orbit");
    let generator = if args.oracle {
        let views = camera::orbit(&camera::even_azimuths(21), 10.0, SV3D_RADIUS);
        let k = Intrinsics::from_fov(SV3D_FOV_DEG, res, res);
        render_orbit(
            &scene,
            &views,
            k,
            Background::Transparent,
            rasterizer,
            &orbit_dir,
            |_, _| Ok(()),
        )?;
        "oracle: renders of the scan".to_string()
    } else {
        let input = [OrbitView {
            elevation_deg: 10.0,
            azimuth_deg: 0.0,
            radius: SV3D_RADIUS,
        }];
        let k = Intrinsics::from_fov(SV3D_FOV_DEG, 576, 576);
        let input_dir = dir.join("input");
        render_orbit(
            &scene,
            &input,
            k,
            Background::Colour([1.0; 3]),
            rasterizer,
            &input_dir,
            |_, _| Ok(()),
        )?;
        prepare_into(
            &input_dir.join("000.png"),
            &PrepareOptions::default(),
            false,
            &dir.join("prepare"),
            on_event,
        )?;
        let settings = OrbitSettings {
            generator: args.profile.inflate_settings(),
            frames: 21,
            elevation: 10.0,
            input_elevation: 10.0,
            res,
        };
        let prepared = dir.join("prepare/prepared.png");
        let image = read_prepared(&prepared)?;
        orbit_into(
            &prepared,
            &image,
            &settings,
            &Inflate {
                profile: args.profile.into(),
                ..Default::default()
            },
            rasterizer,
            &orbit_dir,
            on_event,
        )?;
        format!(
            "inflate ({} profile): the weight-free baseline",
            value_name(args.profile)
        )
    };
    let coarse = args
        .preset
        .coarse(args.coarse, !args.oracle, None, args.nerf_seconds);
    coarse.run(&orbit_dir, &dir.join("coarse"), on_event)?;
    let config = args.preset.fine(args.fine_steps);
    let fine_steps = config.steps;
    let (mesh, fine) = if fine_steps == 0 {
        let mesh = read_mesh(&dir.join("coarse").join(coarse.output()))?.mesh;
        (mesh, "none".to_string())
    } else {
        refine_into(
            &dir.join("coarse"),
            &orbit_dir,
            config,
            &[],
            args.device.into(),
            1024,
            None,
            &dir.join("fine"),
            on_event,
        )?;
        let mesh = read_mesh(&dir.join("fine/fine.obj"))?.mesh;
        (mesh, format!("DMTet, {fine_steps} steps"))
    };
    let mut mesh = mesh.simplified(100_000);
    // The benchmark knows the conditioning camera, so the mesh goes where that camera sees the
    // object, which is the scan's normalised frame; an oracle orbit is in that frame already.
    if !args.oracle {
        mesh.transform(&photo_frame(&dir.join("prepare"), 10.0)?);
    }
    // The oracle has no conditioning image: its orbit's first frame is the view it would be.
    let input = if args.oracle {
        orbit_dir.join("000.png")
    } else {
        dir.join("input/000.png")
    };
    write_sheet(dir, &scene, &mesh, &input, &orbit_dir, rasterizer)?;
    let opts = EvalOptions {
        points: args.points as usize,
        frame: EvalFrame::PredictionNormalised,
        ..Default::default()
    };
    let report = evaluate(&mesh, &scan, &opts);
    let m = &report.metrics;
    let metrics = json!({
        "object": object,
        "orbit": generator,
        "coarse": coarse.settings(),
        "fine": fine,
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
    save(
        &dir.join("metrics.json"),
        serde_json::to_string_pretty(&metrics)?.as_bytes(),
    )?;
    Ok(metrics)
}

/// sheet.png: the orbit the 3D stage saw, the scan and our mesh from the same six cameras.
fn write_sheet(
    dir: &Path,
    scan: &Scene,
    mesh: &orbitmesh_geom::TriMesh,
    input: &Path,
    orbit_dir: &Path,
    rasterizer: &Rasterizer,
) -> Result<()> {
    const VIEWS: usize = 6;
    let ours = Scene::new(mesh, &mut Vec::new())?;
    let k = Intrinsics::from_fov(SV3D_FOV_DEG, 160, 160);
    let blank = || image::RgbaImage::from_pixel(160, 160, image::Rgba([255; 4]));
    let picture = image::open(input)
        .with_context(|| format!("{}: the input image", input.display()))?
        .to_rgba8();
    // Rows: the input then the orbit; the scan; our mesh, each from the same six azimuths.
    let mut cells = vec![(picture, "input".to_string())];
    for i in 0..VIEWS {
        // Orbit frames 0, 3, 7, … of 21, and cameras at the same azimuths.
        let frame = i * 21 / VIEWS;
        let picture = image::open(orbit_dir.join(format!("{frame:03}.png")))
            .with_context(|| format!("{}: orbit frame {frame}", orbit_dir.display()))?
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

const COLUMNS: [&str; 7] = [
    "chamfer",
    "chamfer_l2_squared",
    "fscore@0.01",
    "fscore@0.02",
    "fscore@0.05",
    "volume_iou",
    "normal_consistency",
];

pub fn run(args: BenchArgs) -> Result<ExitCode> {
    if let Some(BenchCommand::Merge { dirs, out }) = &args.command {
        return merge(dirs, out);
    }
    let (Some(dataset), Some(out)) = (&args.dataset, &args.out) else {
        bail!("bench needs DATASET and --out");
    };
    let mut objects = objects(dataset)?;
    if let Some((i, n)) = args.shard {
        objects = objects.into_iter().skip(i).step_by(n).collect();
    }
    std::fs::create_dir_all(out)
        .with_context(|| format!("{}: cannot create the folder", out.display()))?;
    let bar = ProgressBar::new(objects.len() as u64).with_style(
        ProgressStyle::with_template(
            "bench {bar:30} {pos}/{len} objects  {elapsed_precise} (eta {eta})  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // `--jobs` objects at once, each on its share of the cores, so the machine is never
    // oversubscribed; rows keep the objects' order whatever finishes first.
    // One rasterizer for the whole bench: opening a GPU device is not free.
    let rasterizer = open_rasterizer(args.device.into())?;
    let jobs = (args.jobs as usize).clamp(1, objects.len());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_job = (cores / jobs).max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<Row>>> = objects
        .iter()
        .map(|_| std::sync::Mutex::new(None))
        .collect();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(per_job).build();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some((name, path)) = objects.get(i) else {
                        break;
                    };
                    bar.set_message(name.clone());
                    let row = match &pool {
                        Ok(pool) => {
                            pool.install(|| bench_one(name, path, out, &args, &rasterizer, &bar))
                        }
                        Err(e) => Row {
                            name: name.clone(),
                            values: Err(format!("no thread pool: {e}")),
                        },
                    };
                    if let Err(e) = &row.values {
                        bar.suspend(|| eprintln!("error: {name}: {e}"));
                    }
                    if let Ok(mut slot) = slots[i].lock() {
                        *slot = Some(row);
                    }
                    bar.inc(1);
                }
            });
        }
    });
    let rows: Vec<Row> = slots
        .into_iter()
        .filter_map(|s| s.into_inner().ok().flatten())
        .collect();
    bar.finish_and_clear();
    let orbit = if args.oracle {
        "oracle (renders of the scans)".to_string()
    } else {
        format!(
            "inflate, {} profile (weight-free baseline)",
            value_name(args.profile)
        )
    };
    let coarse = if args.coarse.is_nerf(!args.oracle) {
        "the hash-grid NeRF"
    } else {
        "the visual hull"
    };
    let mode = format!("{orbit}; coarse stage: {coarse}");
    write_report(out, &rows, &mode)?;
    Ok(ExitCode::SUCCESS)
}

/// One object: its earlier metrics.json if it has one, else a fresh run. The run's warnings are
/// shown above `bar`, named by the object; its steps are not (the bar counts objects).
fn bench_one(
    name: &str,
    path: &Path,
    out: &Path,
    args: &BenchArgs,
    rasterizer: &Rasterizer,
    bar: &ProgressBar,
) -> Row {
    let dir = out.join(name);
    let mut on_event = |e: &Event| {
        if let Event::Warning { message, .. } = e {
            bar.suspend(|| eprintln!("warning: {name}: {message}"));
        }
        Flow::Continue
    };
    let done = std::fs::read(dir.join("metrics.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    let result = match done {
        Some(m) => Ok(m),
        None => run_object(path, &dir, args, rasterizer, &mut on_event)
            .map_err(|e| format!("{e:#}").replace('\n', " ")),
    };
    let values = result.map(|m| {
        COLUMNS
            .iter()
            .chain(&["seconds"])
            .filter_map(|c| Some((c.to_string(), m[c].as_f64()?)))
            .collect()
    });
    Row {
        name: name.to_string(),
        values,
    }
}

/// Reads a bench output's results.csv back into rows.
fn read_rows(dir: &Path) -> Result<Vec<Row>> {
    let path = dir.join("results.csv");
    let mut reader = csv::Reader::from_path(&path)
        .with_context(|| format!("{}: cannot read (is this a bench output?)", path.display()))?;
    let header: Vec<String> = reader.headers()?.iter().map(str::to_string).collect();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.with_context(|| format!("{}: bad row", path.display()))?;
        let field = |name: &str| {
            header
                .iter()
                .position(|h| h == name)
                .and_then(|i| record.get(i))
        };
        let name = field("object").unwrap_or_default().to_string();
        let error = field("error").unwrap_or_default();
        let values = if error.is_empty() {
            Ok(COLUMNS
                .iter()
                .chain(&["seconds"])
                .filter_map(|c| Some((c.to_string(), field(c)?.parse::<f64>().ok()?)))
                .collect())
        } else {
            Err(error.to_string())
        };
        rows.push(Row { name, values });
    }
    Ok(rows)
}

fn merge(dirs: &[PathBuf], out: &Path) -> Result<ExitCode> {
    let mut rows = Vec::new();
    let mut mode: Option<String> = None;
    for dir in dirs {
        rows.extend(read_rows(dir)?);
        let summary: Value = serde_json::from_slice(
            &std::fs::read(dir.join("summary.json"))
                .with_context(|| format!("{}: no summary.json", dir.display()))?,
        )?;
        let this = summary["orbit"].as_str().unwrap_or_default().to_string();
        match &mode {
            Some(m) if *m != this => bail!(
                "{}: its orbit mode ({this}) differs from the other shards' ({m})",
                dir.display()
            ),
            _ => mode = Some(this),
        }
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    std::fs::create_dir_all(out)
        .with_context(|| format!("{}: cannot create the folder", out.display()))?;
    write_report(out, &rows, mode.as_deref().unwrap_or_default())?;
    Ok(ExitCode::SUCCESS)
}

/// results.csv, summary.json, report.md and chamfer.png for `rows`, and a line on stdout.
fn write_report(out: &Path, rows: &[Row], mode: &str) -> Result<()> {
    let mut table = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["object"];
    header.extend(COLUMNS);
    header.extend(["seconds", "error"]);
    table.write_record(&header)?;
    for row in rows {
        let mut record = vec![row.name.clone()];
        match &row.values {
            Ok(m) => {
                record.extend(
                    COLUMNS
                        .iter()
                        .chain(&["seconds"])
                        .map(|c| m.get(*c).map_or(String::new(), |v| v.to_string())),
                );
                record.push(String::new());
            }
            Err(e) => {
                record.extend(std::iter::repeat_n(String::new(), COLUMNS.len() + 1));
                record.push(e.clone());
            }
        }
        table.write_record(&record)?;
    }
    save(
        &out.join("results.csv"),
        &table.into_inner().context("results table")?,
    )?;

    let ok: Vec<&BTreeMap<String, f64>> =
        rows.iter().filter_map(|r| r.values.as_ref().ok()).collect();
    let stats = |c: &str| {
        let mut v: Vec<f64> = ok.iter().filter_map(|m| m.get(c).copied()).collect();
        v.sort_by(f64::total_cmp);
        let mean = if v.is_empty() {
            f64::NAN
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        };
        let median = v.get(v.len() / 2).copied().unwrap_or(f64::NAN);
        json!({ "mean": mean, "median": median })
    };
    let metrics: serde_json::Map<String, Value> =
        COLUMNS.iter().map(|c| (c.to_string(), stats(c))).collect();
    let summary = json!({
        "orbit": mode,
        "objects": rows.len(), "failed": rows.len() - ok.len(), "metrics": metrics,
    });
    save(
        &out.join("summary.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;

    let value = |m: &BTreeMap<String, f64>, c: &str| m.get(c).copied().unwrap_or(f64::NAN);
    let mut md = format!(
        "# orbitmesh bench\n\nOrbit: {mode}, then the DMTet fine stage \
         unless --fine-steps 0 (each object's metrics.json says which). Metrics: the gso \
         protocol of DESIGN.md; a generated orbit's mesh is measured where the conditioning \
         camera sees the object (prepare's crop and zoom undone).\n\n\
         ![per-object Chamfer](chamfer.png)\n\n\
         | object | Chamfer ↓ | F@0.01 ↑ | F@0.05 ↑ | volume IoU ↑ | seconds |\n|---|---|---|---|---|---|\n"
    );
    for row in rows {
        let name = &row.name;
        match &row.values {
            Ok(m) => {
                md += &format!(
                    "| {name} | {:.4} | {:.3} | {:.3} | {:.3} | {:.1} |\n",
                    value(m, "chamfer"),
                    value(m, "fscore@0.01"),
                    value(m, "fscore@0.05"),
                    value(m, "volume_iou"),
                    value(m, "seconds"),
                )
            }
            Err(e) => md += &format!("| {name} | failed: {e} | | | | |\n"),
        }
    }
    let mean = |c: &str| summary["metrics"][c]["mean"].as_f64().unwrap_or(f64::NAN);
    md += &format!(
        "| **mean** | **{:.4}** | {:.3} | {:.3} | **{:.3}** | |\n\n\
         Reference rows on GSO from the SV3D paper (not measured here): SV3D_p Chamfer 0.024, IoU \
         0.614; SV3D's 3D stage on ground-truth renders 0.021 / 0.689; EscherNet Chamfer 0.042.\n",
        mean("chamfer"),
        mean("fscore@0.01"),
        mean("fscore@0.05"),
        mean("volume_iou")
    );
    save(&out.join("report.md"), md.as_bytes())?;
    let chamfers: Vec<(String, Option<f64>)> = rows
        .iter()
        .map(|r| {
            (
                r.name.clone(),
                r.values
                    .as_ref()
                    .ok()
                    .and_then(|m| m.get("chamfer").copied()),
            )
        })
        .collect();
    let chart = chamfer_chart(&chamfers, &PAPER_CHAMFER)?;
    save(
        &out.join("chamfer.png"),
        &encode_png(&DynamicImage::ImageRgb8(chart).into_rgba8())?,
    )?;
    println!(
        "{} objects, {} failed; mean Chamfer {:.4}, mean IoU {:.3}; report in {}",
        rows.len(),
        rows.len() - ok.len(),
        mean("chamfer"),
        mean("volume_iou"),
        out.join("report.md").display()
    );
    Ok(())
}
