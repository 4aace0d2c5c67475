//! Meshes made into the files engines read: `orbitmesh export`'s work, and the name the export
//! stage of [`crate::run`] gives its baked textures.

use std::path::{Path, PathBuf};

use orbitmesh_geom::bake::low_poly;
use orbitmesh_geom::io::{EngineOptions, Format, write_for_engines_as};
use orbitmesh_geom::{Pivot, TriMesh, UpAxis};

use crate::error::{PipelineError, Result};
use crate::stages::read_mesh_z_up;

/// The stem of the baked textures' names: the output file's, else `model`.
pub fn texture_stem(out: Option<&Path>) -> String {
    out.and_then(Path::file_stem)
        .map_or("model".into(), |s| s.to_string_lossy().into_owned())
}

/// Refuses a longest side (`--size`) that is not a positive number of metres.
pub(crate) fn check_size(size: Option<f64>) -> Result<()> {
    match size {
        Some(size) if !(size.is_finite() && size > 0.0) => Err(PipelineError::Invalid(
            "--size must be a positive number of metres".into(),
        )),
        _ => Ok(()),
    }
}

/// A mesh file converted for engines (`orbitmesh export`).
#[derive(Debug, Clone)]
pub struct FileExport {
    /// The mesh file (or GSO object folder), and the axis the file calls up.
    pub input: PathBuf,
    pub input_up: UpAxis,
    /// Centre the bounding box at the origin and scale its longest side to 1 first.
    pub normalise: bool,
    /// The face budget (quadric decimation), if any.
    pub faces: Option<usize>,
    /// The longest side in metres and where the origin goes ([`TriMesh::place`]).
    pub size: Option<f64>,
    pub pivot: Option<Pivot>,
    pub engine: EngineOptions,
    /// The output's format, else the one its extension names.
    pub format: Option<Format>,
}

impl FileExport {
    /// Writes the converted mesh to `out` (whole or not at all), everything that can be refused
    /// refused before the mesh is read. Returns the mesh written and the input file's warnings.
    pub fn write(&self, out: &Path) -> Result<(TriMesh, Vec<String>)> {
        check_size(self.size)?;
        let format = match self.format {
            Some(format) => format,
            None => Format::of_path(out).map_err(|_| {
                PipelineError::input(
                    out,
                    "cannot tell the format from the extension; give --format glb|obj|ply",
                )
            })?,
        };
        self.engine.check_as(out, format)?;
        let file = read_mesh_z_up(&self.input, self.input_up, self.normalise)?;
        // Baked textures are written here, then copied beside the OBJ or into the GLB.
        let textures = tempfile::tempdir().map_err(PipelineError::io(
            &std::env::temp_dir(),
            "cannot make a temporary folder",
        ))?;
        let mut mesh = low_poly(
            &file.mesh,
            self.faces.unwrap_or(usize::MAX),
            self.engine.bake.as_ref(),
            textures.path(),
            &texture_stem(Some(out)),
        )?;
        mesh.place(self.size, self.pivot);
        write_for_engines_as(out, format, &mesh, &self.engine)?;
        Ok((mesh, file.warnings))
    }
}
