//! `orbitmesh hull`: the visual hull of an orbit's silhouettes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use orbitmesh_nerf::HullOptions;
use orbitmesh_pipeline::StagedFolder;
use orbitmesh_pipeline::stages::coarse::hull_into;

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
