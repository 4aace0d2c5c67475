//! `orbitmesh render`: a mesh seen from an orbit of cameras, as RGBA frames and camera files.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use orbitmesh_pipeline::stages::scan::{Extras, MeshOrbit};
use orbitmesh_render::camera::{self, SV3D_ELEVATION_DEG, SV3D_FOV_DEG, SV3D_FRAMES, SV3D_RADIUS};
use orbitmesh_render::{Background, open_rasterizer};

use crate::input::{DeviceArg, UpArg};

#[derive(Args)]
#[command(
    after_help = "Cameras follow SV3D's orbit (DESIGN.md): Z up, looking at the origin, \
azimuth 0 on +X. Writes DIR/000.png…, DIR/cameras.json and DIR/transforms.json \
(instant-ngp/nerfstudio)."
)]
pub struct RenderArgs {
    /// The mesh (.obj, .ply, .off, optionally .gz, or a GSO object folder)
    mesh: PathBuf,
    /// Output folder
    #[arg(long)]
    out: PathBuf,
    /// Number of frames, evenly spaced in azimuth from 0
    #[arg(long, default_value_t = SV3D_FRAMES as u64, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    frames: u64,
    /// Elevation in degrees above the XY plane
    #[arg(long, default_value_t = SV3D_ELEVATION_DEG, allow_negative_numbers = true)]
    elevation: f64,
    /// Azimuths in degrees, comma-separated (overrides --frames)
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    azimuths: Option<Vec<f64>>,
    /// Image side in pixels
    #[arg(long, default_value_t = 576)]
    res: u32,
    /// Camera distance from the origin
    #[arg(long, default_value_t = SV3D_RADIUS)]
    radius: f64,
    /// Field of view in degrees
    #[arg(long, default_value_t = SV3D_FOV_DEG)]
    fov: f64,
    /// white, black, transparent, or #rrggbb
    #[arg(long, default_value = "white", value_parser = parse_background)]
    background: Background,
    /// Centre the bounding box and scale its longest side to 1 first
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    normalise: bool,
    /// Up axis of the mesh file (GSO scans are Z up, many others Y up)
    #[arg(long, value_enum, default_value = "z")]
    up: UpArg,
    /// Where to rasterize
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
    /// Also write a labelled contact sheet of all frames
    #[arg(long)]
    sheet: Option<PathBuf>,
    /// Also write depth (16-bit PNG, units of 1e-4, 0 = empty) under DIR/depth/
    #[arg(long)]
    depth: bool,
    /// Also write world-space normals ((n+1)/2 as RGB) under DIR/normal/
    #[arg(long)]
    normals: bool,
}

fn parse_background(s: &str) -> Result<Background, String> {
    match s {
        "white" => Ok(Background::Colour([1.0; 3])),
        "black" => Ok(Background::Colour([0.0; 3])),
        "transparent" => Ok(Background::Transparent),
        hex if hex.len() == 7 && hex.starts_with('#') => {
            let c = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).map(|v| f32::from(v) / 255.0);
            match (c(1), c(3), c(5)) {
                (Ok(r), Ok(g), Ok(b)) => Ok(Background::Colour([r, g, b])),
                _ => Err(format!("{s:?} is not a #rrggbb colour")),
            }
        }
        _ => Err(format!(
            "{s:?}: expected white, black, transparent or #rrggbb"
        )),
    }
}

pub fn run(args: RenderArgs) -> Result<ExitCode> {
    let orbit = MeshOrbit {
        azimuths: (args.azimuths.clone())
            .unwrap_or_else(|| camera::even_azimuths(args.frames as usize)),
        mesh: args.mesh,
        up: args.up.into(),
        normalise: args.normalise,
        elevation_deg: args.elevation,
        radius: args.radius,
        fov_deg: args.fov,
        res: args.res,
        background: args.background,
        extras: Extras {
            depth: args.depth,
            normals: args.normals,
        },
        sheet: args.sheet,
    };
    let (scene, warnings) = orbit.scene()?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    let rasterizer = open_rasterizer(args.device.into())?;
    let bar = ProgressBar::new(orbit.azimuths.len() as u64).with_style(
        ProgressStyle::with_template("rendering {bar:30} {pos}/{len} frames  {elapsed_precise}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let frames = orbit.render_into(&scene, &rasterizer, &args.out, || bar.inc(1))?;
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    println!(
        "{frames} frames of {}² in {} via {}: {seconds:.3} s to rasterize, shade, encode and write them",
        args.res,
        args.out.display(),
        rasterizer.name(),
    );
    Ok(ExitCode::SUCCESS)
}
