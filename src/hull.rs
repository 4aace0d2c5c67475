//! `orbitmesh hull`: the visual hull of an orbit's silhouettes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use orbitmesh_geom::write_mesh;
use orbitmesh_nerf::{HullOptions, read_orbit, visual_hull};

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

pub fn run(args: HullArgs) -> Result<ExitCode> {
    if !(args.extent > 0.0 && args.extent.is_finite()) {
        anyhow::bail!("--extent must be positive");
    }
    let orbit = read_orbit(&args.orbit)?;
    let started = Instant::now();
    let opts = HullOptions {
        resolution: args.resolution as usize,
        extent: args.extent,
    };
    let (_, mesh) = visual_hull(&orbit, &opts)?;
    let seconds = started.elapsed().as_secs_f64();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("{}: cannot create the folder", args.out.display()))?;
    let path = args.out.join("hull.obj");
    write_mesh(&path, &mesh)?;
    println!(
        "visual hull of {} frames on a {}³ grid: {} vertices, {} faces in {seconds:.2} s -> {}",
        orbit.frames.len(),
        args.resolution,
        mesh.positions.len(),
        mesh.faces.len(),
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}
