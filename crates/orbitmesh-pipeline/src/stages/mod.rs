//! The stage functions: each writes one stage's outputs into the folder it is given (the work
//! folder's `<stage>.tmp`, or a command's staged output folder) and returns what its
//! `stage.json` keeps.

pub mod coarse;
pub mod export;
pub mod fine;
pub mod orbit;
pub mod prepare;
pub mod scan;

use std::path::Path;

use orbitmesh_geom::{MeshFile, UpAxis, normalising_transform, read_mesh};

use crate::error::Result;

/// Reads a mesh file (or GSO object folder) into the Z-up frame, and with `normalise` its
/// bounding box centred at the origin with its longest side 1: how `render` and `export` take
/// their input.
pub(crate) fn read_mesh_z_up(path: &Path, up: UpAxis, normalise: bool) -> Result<MeshFile> {
    let mut file = read_mesh(path)?;
    file.mesh.transform(&up.to_z_up());
    if normalise {
        file.mesh
            .transform(&normalising_transform(&file.mesh.bounds()));
    }
    Ok(file)
}
