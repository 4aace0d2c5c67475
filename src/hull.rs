//! `orbitmesh hull`: the visual hull of an orbit's silhouettes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use orbitmesh_geom::write_mesh;
use orbitmesh_nerf::{HullOptions, visual_hull};
use orbitmesh_pipeline::StagedFolder;
use orbitmesh_render::read_orbit;

#[derive(Args)]
#[command(
    after_help = "ORBIT_DIR holds frames with alpha and their transforms.json (from \
`orbitmesh render` or a nerfstudio/instant-ngp orbit). Writes DIR/hull.obj in the object frame."
)]
pub struct HullArgs {
    /// Folder of frames + transforms.json
    orbit: PathBuf,
    /// Output folder
    #[arg(long)]
    out: PathBuf,
    /// Grid points per side
    #[arg(long, default_value_t = 192, value_parser = clap::value_parser!(u64).range(8..=1024))]
    resolution: u64,
    /// Half the side of the carved cube, centred at the origin
    #[arg(long, default_value_t = 0.55)]
    extent: f32,
}

/// Carves the hull of the orbit in `orbit_dir` into `dir`/hull.obj. Returns what the stage
/// record keeps.
pub fn hull_into(orbit_dir: &Path, opts: &HullOptions, dir: &Path) -> Result<serde_json::Value> {
    let orbit = read_orbit(orbit_dir)?;
    let (_, mesh) = visual_hull(&orbit, opts)?;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create the folder", dir.display()))?;
    write_mesh(&dir.join("hull.obj"), &mesh)?;
    Ok(serde_json::json!({
        "method": "visual hull (space carving of the frames' alpha, marching cubes)",
        "frames": orbit.frames.len(),
        "vertices": mesh.positions.len(),
        "faces": mesh.faces.len(),
    }))
}

pub fn run(args: HullArgs) -> Result<ExitCode> {
    if !(args.extent > 0.0 && args.extent.is_finite()) {
        anyhow::bail!("--extent must be positive");
    }
    let opts = HullOptions {
        resolution: args.resolution as usize,
        extent: args.extent,
    };
    let started = Instant::now();
    let staged = StagedFolder::new(&args.out)?;
    let details = hull_into(&args.orbit, &opts, staged.path())?;
    staged.publish()?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "visual hull of {} frames on a {}³ grid: {} vertices, {} faces in {seconds:.2} s -> {}",
        details["frames"],
        args.resolution,
        details["vertices"],
        details["faces"],
        args.out.join("hull.obj").display()
    );
    Ok(ExitCode::SUCCESS)
}
