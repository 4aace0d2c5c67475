//! `orbitmesh export`: a mesh to OBJ (+MTL, textures), PLY or GLB.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use orbitmesh_geom::bake::low_poly;
use orbitmesh_geom::frame::normalising_transform;
use orbitmesh_geom::io::{Format as MeshFormat, write_for_engines_as};

use crate::input::{EngineArgs, UpArg, load_mesh};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Glb,
    Obj,
    Ply,
}

#[derive(Args)]
#[command(
    after_help = "GLB is written Y up (glTF's convention) with normals and the textures \
embedded; OBJ and PLY stay Z up like every orbitmesh mesh unless --up y. glTF units are metres: \
--size gives the object's longest side in metres, --pivot base stands it on the origin, --lods N \
adds levels of detail at halving face budgets, --normal-map bakes the input's colour and a \
normal map onto the decimated mesh."
)]
pub struct ExportArgs {
    /// The mesh to convert
    mesh: PathBuf,
    /// Output file
    #[arg(short, long)]
    out: PathBuf,
    /// Output format [default: from the output's extension]
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Up axis of the input file
    #[arg(long, value_enum, default_value = "z")]
    input_up: UpArg,
    /// Centre the bounding box at the origin and scale its longest side to 1 first
    #[arg(long)]
    normalise: bool,
    /// Scale so the longest side measures this many metres (units)
    #[arg(long)]
    size: Option<f64>,
    /// Decimate to at most this many faces (quadric simplification)
    #[arg(long, value_parser = clap::value_parser!(u64).range(4..))]
    faces: Option<u64>,
    #[command(flatten)]
    engine: EngineArgs,
}

pub fn run(args: ExportArgs) -> Result<ExitCode> {
    let format = match args.format {
        Some(f) => f,
        None => match args
            .out
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_lowercase)
        {
            Some(e) if e == "glb" => Format::Glb,
            Some(e) if e == "obj" => Format::Obj,
            Some(e) if e == "ply" => Format::Ply,
            _ => bail!(
                "{}: cannot tell the format from the extension; give --format glb|obj|ply",
                args.out.display()
            ),
        },
    };
    if let Some(size) = args.size
        && !(size.is_finite() && size > 0.0)
    {
        bail!("--size must be a positive number of metres");
    }
    let format = match format {
        Format::Glb => MeshFormat::Glb,
        Format::Obj => MeshFormat::Obj,
        Format::Ply => MeshFormat::Ply,
    };
    let engine = args.engine.options();
    engine.check_as(&args.out, format)?;
    let mut mesh = load_mesh(&args.mesh, args.input_up)?;
    if args.normalise {
        mesh.transform(&normalising_transform(&mesh.bounds()));
    }
    // Baked textures are written here, then copied beside the OBJ or into the GLB.
    let textures = tempfile::tempdir()?;
    let stem = args
        .out
        .file_stem()
        .map_or("model".into(), |s| s.to_string_lossy().into_owned());
    mesh = low_poly(
        &mesh,
        args.faces.map_or(usize::MAX, |f| f as usize),
        engine.bake.as_ref(),
        textures.path(),
        &stem,
    )?;
    if let Some(size) = args.size {
        mesh.scale_longest_side_to(size);
    }
    if let Some(pivot) = args.engine.pivot() {
        mesh.move_pivot_to_origin(pivot);
    }
    write_for_engines_as(&args.out, format, &mesh, &engine)?;
    println!(
        "{} vertices, {} faces -> {}",
        mesh.positions.len(),
        mesh.faces.len(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
