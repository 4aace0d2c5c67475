//! What a baked normal map is worth, measured (scripts/bench-normal-map.sh runs it).
//!
//! For each object of a GSO-layout folder: an oracle orbit of the scan lit by a light from the
//! camera (as SV3D's frames and photos are lit, so shading shows in them), the pipeline's coarse
//! and fine stages on it, then the fine mesh decimated to each budget and baked onto (colour and
//! normal map, `orbitmesh_geom::bake::low_poly`). Each is drawn from held-out views between the
//! orbit's and above it, lit as the frames were, under the light share the fine stage fitted:
//! PSNR of the fine mesh, of the low-poly mesh with its baked colour alone (drawn faceted, as our
//! renderer draws any mesh, and smooth-shaded, as an engine draws a GLB), and with the normal
//! map too, over the whole picture and over the pixels both cover (the shading alone: a normal
//! map cannot move a silhouette); and the Chamfer distance of the low-poly mesh to the fine one.
//! A normal map that does its job recovers at least half of the PSNR the decimation lost.
//!
//! The PSNRs are given for the views at the orbit's elevation (between its frames: what the
//! frames constrain), for those from 30° (above anything the fine stage saw: a bowl's inside
//! there is the fine stage's guess), and for all. The baseline that matters is the smooth-shaded
//! one: a GLB always carries vertex normals, so an engine draws the mesh without its map smooth.
//!
//! `normal_map_psnr DATA WORK [fast|default|best] [BUDGET,…] [hull|nerf]` (defaults: fast;
//! 2000,5000,20000; the visual hull as the coarse stage)

use std::path::{Path, PathBuf};
use std::time::Instant;

use orbitmesh_bench::render_oracle_orbit;
use orbitmesh_geom::bake::{BakeOptions, low_poly};
use orbitmesh_geom::io::resolve_mesh_path;
use orbitmesh_geom::{
    Sampling, TriMesh, chamfer_distance, normalising_transform, read_mesh, sample_surface,
};
use orbitmesh_nerf::train::psnr;
use orbitmesh_orbit::OrbitOrder;
use orbitmesh_pipeline::stages::fine::psnr_on_white;
use orbitmesh_pipeline::stages::scan::render_view;
use orbitmesh_pipeline::{
    CoarseChoice, ExportConfig, Flow, MeshFrame, OrbitSource, Overrides, Plan, Preset,
};
use orbitmesh_render::camera::{
    Intrinsics, OrbitView, SV3D_ELEVATION_DEG, SV3D_FOV_DEG, SV3D_FRAMES, SV3D_RADIUS,
};
use orbitmesh_render::{Background, DeviceChoice, Rasterizer, Scene, open_rasterizer};

/// The ambient share of the frames' light (the rest comes from the camera).
const AMBIENT: f32 = 0.3;
const TEXTURE: u32 = 1024;

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [data, work, rest @ ..] = args.as_slice() else {
        return Err(
            "usage: normal_map_psnr DATA WORK [fast|default|best] [BUDGET,…] [hull|nerf]".into(),
        );
    };
    let preset = match rest.first().map(String::as_str) {
        None | Some("fast") => Preset::Fast,
        Some("default") => Preset::Default,
        Some("best") => Preset::Best,
        Some(other) => return Err(format!("{other}: not a preset (fast, default, best)").into()),
    };
    let budgets: Vec<usize> = match rest.get(1) {
        Some(list) => list
            .split(',')
            .map(|b| b.parse().map_err(|_| format!("{b}: not a face count")))
            .collect::<Result<_, _>>()?,
        None => vec![2000, 5000, 20000],
    };
    let coarse = match rest.get(2).map(String::as_str) {
        None | Some("hull") => CoarseChoice::Hull,
        Some("nerf") => CoarseChoice::Nerf,
        Some(other) => return Err(format!("{other}: not a coarse stage (hull, nerf)").into()),
    };
    let rasterizer = open_rasterizer(DeviceChoice::Cpu)?;
    let mut objects: Vec<PathBuf> = std::fs::read_dir(data)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    objects.sort();
    println!(
        "| object | fine faces | budget | faces | Chamfer to fine | views | PSNR: fine / low-poly faceted / smooth / + normal map | lost / recovered vs faceted, half? | vs smooth | shading PSNR: the same | vs faceted | vs smooth | bake s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for object in objects {
        let name = object.file_name().unwrap().to_string_lossy().into_owned();
        let dir = Path::new(work).join(&name);
        let (fine, light, truth, views) = fine_mesh(&object, &dir, preset, coarse, &rasterizer)?;
        // The PSNRs of each held-out view; the first view of each elevation is saved as
        // `<what>_<view>.png` in the object's folder, to look at.
        let measure = |mesh: &TriMesh, what: &str| -> Result<Vec<Psnr>, Error> {
            let mut scene = Scene::new(mesh, &mut Vec::new())?;
            scene.headlight = light;
            let mut psnrs = Vec::new();
            for (i, (view, frame)) in views.iter().zip(&truth).enumerate() {
                let drawn = render_view(&scene, view, Background::Transparent, &rasterizer)?;
                psnrs.push(Psnr {
                    image: psnr_on_white(&drawn, frame),
                    shading: shading_psnr(&drawn, frame),
                });
                if i % HELD_OUT_PER_ELEVATION == 0 {
                    drawn.save(dir.join(format!("{what}_{i:02}.png")))?;
                    frame.save(dir.join(format!("truth_{i:02}.png")))?;
                }
            }
            Ok(psnrs)
        };
        let fine_psnr = measure(&fine, "fine")?;
        let fine_points = sample_surface(&fine, 100_000, 1, Sampling::Stratified).points;
        for &budget in &budgets {
            let textures = dir.join(format!("lowpoly_{budget}"));
            std::fs::create_dir_all(&textures)?;
            let started = Instant::now();
            let options = BakeOptions {
                size: TEXTURE,
                ..Default::default()
            };
            let mapped = low_poly(&fine, budget, Some(&options), &textures, "lowpoly")?;
            let seconds = started.elapsed().as_secs_f64();
            // The same mesh without the map, drawn faceted (as our renderer draws every mesh)
            // and smooth-shaded (as an engine draws a GLB's normals): a map of the unturned
            // normal.
            let mut faceted = mapped.clone();
            faceted.materials[0].normal_texture = None;
            let unturned = textures.join("unturned_normal.png");
            image::RgbaImage::from_pixel(4, 4, image::Rgba([128, 128, 255, 255]))
                .save(&unturned)?;
            let mut smooth = mapped.clone();
            smooth.materials[0].normal_texture = Some(unturned);
            let points = sample_surface(&mapped, 100_000, 2, Sampling::Stratified).points;
            let chamfer = chamfer_distance(&points, &fine_points);
            let (faceted, smooth, with) = (
                measure(&faceted, &format!("lowpoly_{budget}"))?,
                measure(&smooth, &format!("smooth_{budget}"))?,
                measure(&mapped, &format!("mapped_{budget}"))?,
            );
            // Whether the map recovers half of what the decimation lost, against a baseline.
            let holds = |fine: f64, without: f64, with: f64| {
                let (lost, recovered) = (fine - without, with - without);
                format!(
                    "{lost:.2} / {recovered:.2} {}",
                    if recovered >= 0.5 * lost { "yes" } else { "NO" }
                )
            };
            for (label, range) in [
                (
                    format!("{SV3D_ELEVATION_DEG}° (the orbit's)"),
                    0..HELD_OUT_PER_ELEVATION,
                ),
                (
                    format!("{ABOVE_DEG}°"),
                    HELD_OUT_PER_ELEVATION..2 * HELD_OUT_PER_ELEVATION,
                ),
                ("all".to_string(), 0..2 * HELD_OUT_PER_ELEVATION),
            ] {
                let row = |pick: fn(&Psnr) -> f64| {
                    let [f, a, b, m] = [&fine_psnr, &faceted, &smooth, &with].map(|psnrs| {
                        let views = &psnrs[range.clone()];
                        views.iter().map(pick).sum::<f64>() / views.len() as f64
                    });
                    format!(
                        "{f:.2} / {a:.2} / {b:.2} / {m:.2} | {} | {}",
                        holds(f, a, m),
                        holds(f, b, m)
                    )
                };
                println!(
                    "| {name} | {} | {budget} | {} | {chamfer:.5} | {label} | {} | {} | {seconds:.1} |",
                    fine.faces.len(),
                    mapped.faces.len(),
                    row(|p| p.image),
                    row(|p| p.shading),
                );
            }
        }
    }
    Ok(())
}

/// The scan of `object` normalised, its lit oracle orbit, the pipeline's fine mesh of it (in
/// `dir`, resumable), the light share the fine stage fitted, and the held-out views with the
/// scan's renders from them.
#[allow(clippy::type_complexity)]
fn fine_mesh(
    object: &Path,
    dir: &Path,
    preset: Preset,
    coarse: CoarseChoice,
    rasterizer: &Rasterizer,
) -> Result<
    (
        TriMesh,
        Option<f32>,
        Vec<image::RgbaImage>,
        Vec<orbitmesh_render::Camera>,
    ),
    Error,
> {
    let mut scan = read_mesh(&resolve_mesh_path(object)?)?.mesh;
    scan.transform(&normalising_transform(&scan.bounds()));
    let mut scene = Scene::new(&scan, &mut Vec::new())?;
    scene.headlight = Some(AMBIENT);
    let k = Intrinsics::from_fov(SV3D_FOV_DEG, preset.frame_side(), preset.frame_side());
    let oracle = dir.join("oracle");
    if !oracle.join("transforms.json").is_file() {
        render_oracle_orbit(&scene, preset.frame_side(), rasterizer, &oracle)?;
    }
    let overrides = Overrides {
        coarse,
        ..Default::default()
    };
    let export = ExportConfig {
        faces: usize::MAX,
        frame: MeshFrame::Orbit,
        size: None,
        pivot: None,
        out: None,
        engine: Default::default(),
    };
    let orbit_source = OrbitSource::Import {
        dir: oracle,
        order: OrbitOrder::Transforms,
    };
    let plan = Plan::new(
        preset,
        &overrides,
        None,
        orbit_source,
        export,
        DeviceChoice::Cpu,
    );
    let work = dir.join("work");
    orbitmesh_pipeline::run(&plan, &work, &mut |_| Flow::Continue)?;
    let fine = read_mesh(&work.join("fine/fine.obj"))?.mesh;
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.join("fine/stage.json"))?)?;
    let shading = &record["details"]["shading_ambient_headlight"];
    let [ambient, headlight] = [0, 1].map(|i| shading[i].as_f64().unwrap_or(0.0) as f32);
    let light = (ambient + headlight > 1e-3).then(|| ambient / (ambient + headlight));
    // Seven views halfway between the orbit's, at its elevation, and seven from above.
    let step = 360.0 / SV3D_FRAMES as f64;
    let views: Vec<_> = [SV3D_ELEVATION_DEG, ABOVE_DEG]
        .into_iter()
        .flat_map(|elevation_deg| {
            (0..HELD_OUT_PER_ELEVATION).map(move |i| OrbitView {
                elevation_deg,
                azimuth_deg: 0.5 * step + i as f64 * 3.0 * step,
                radius: SV3D_RADIUS,
            })
        })
        .map(|v| v.camera(k))
        .collect();
    let truth = views
        .iter()
        .map(|v| render_view(&scene, v, Background::Transparent, rasterizer))
        .collect::<Result<_, _>>()?;
    Ok((fine, light, truth, views))
}

/// Held-out views at each of the two elevations.
const HELD_OUT_PER_ELEVATION: usize = 7;

/// The elevation of the held-out views above the orbit, in degrees.
const ABOVE_DEG: f64 = 30.0;

/// The PSNRs of one held-out view, in dB.
struct Psnr {
    /// Of the whole picture over white, as the fine stage's held-out PSNR.
    image: f64,
    /// Over the pixels both pictures cover: the shading alone, which is all a normal map can
    /// change (the silhouette is the low-poly mesh's with or without it).
    shading: f64,
}

/// PSNR over the pixels both pictures cover fully: the shading alone, silhouettes aside.
fn shading_psnr(a: &image::RgbaImage, b: &image::RgbaImage) -> f64 {
    let (mut sum, mut n) = (0.0f64, 0usize);
    for (p, q) in a.pixels().zip(b.pixels()) {
        if p[3] == 255 && q[3] == 255 {
            for k in 0..3 {
                sum += ((f64::from(p[k]) - f64::from(q[k])) / 255.0).powi(2);
            }
            n += 3;
        }
    }
    psnr(sum / n.max(1) as f64)
}
