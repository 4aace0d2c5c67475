//! `orbitmesh export`: a mesh to OBJ (+MTL, textures), PLY or GLB.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use orbitmesh_geom::io::Format as MeshFormat;
use orbitmesh_pipeline::stages::export::FileExport;

use crate::input::{EngineArgs, UpArg, value_enum};

value_enum! {
    enum Format => MeshFormat {
        Glb,
        Obj,
        Ply,
    }
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
    let export = FileExport {
        input: args.mesh,
        input_up: args.input_up.into(),
        normalise: args.normalise,
        faces: args.faces.map(|f| f as usize),
        size: args.size,
        pivot: args.engine.pivot(),
        engine: args.engine.options(),
        format: args.format.map(MeshFormat::from),
    };
    let (mesh, warnings) = export.write(&args.out)?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "{} vertices, {} faces -> {}",
        mesh.positions.len(),
        mesh.faces.len(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
