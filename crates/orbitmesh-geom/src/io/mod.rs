//! Reading meshes from disk (OBJ+MTL, PLY, OFF, gzipped or not, GSO object folders) and writing
//! them (OBJ+MTL+textures, PLY), always through a temporary file that is renamed into place.

mod obj;
mod off;
mod ply;

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::error::{GeomError, Result};
use crate::mesh::TriMesh;

pub use obj::write_obj;
pub use ply::write_ply;

/// A mesh as read from a file, with the file it came from and what was odd but not fatal about it
/// (a missing MTL or texture), for the caller to show.
#[derive(Debug, Clone)]
pub struct MeshFile {
    pub mesh: TriMesh,
    pub path: PathBuf,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Obj,
    Ply,
    Off,
}

/// Resolves a GSO object folder (`<name>/meshes/model.obj` or `<name>/model.obj`) to its mesh
/// file; any other path is returned as it is.
pub fn resolve_mesh_path(path: &Path) -> Result<PathBuf> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    ["meshes/model.obj", "model.obj"]
        .iter()
        .map(|p| path.join(p))
        .find(|p| p.is_file())
        .ok_or_else(|| GeomError::Invalid {
            path: path.to_path_buf(),
            message: "a folder, but neither meshes/model.obj nor model.obj is in it".into(),
        })
}

fn format_of(path: &Path) -> Result<(Format, bool)> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let (stem, gz) = match name.strip_suffix(".gz") {
        Some(stem) => (stem.to_string(), true),
        None => (name, false),
    };
    let format = match Path::new(&stem).extension().and_then(|e| e.to_str()) {
        Some("obj") if !gz => Format::Obj,
        Some("ply") => Format::Ply,
        Some("off") => Format::Off,
        _ => {
            return Err(GeomError::UnknownFormat {
                path: path.to_path_buf(),
            });
        }
    };
    Ok((format, gz))
}

fn open(path: &Path) -> Result<BufReader<File>> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|e| GeomError::io(path, e))
}

/// Reads the whole file, ungzipping it when it is gzipped (by content, not only by name).
fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    let mut raw = Vec::new();
    open(path)?
        .read_to_end(&mut raw)
        .map_err(|e| GeomError::io(path, e))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| GeomError::parse(path, "gzip", e))?;
        return Ok(out);
    }
    Ok(raw)
}

/// Reads a mesh and checks it (`TriMesh::validate`): the one entry point every command uses.
pub fn read_mesh(path: &Path) -> Result<MeshFile> {
    let path = resolve_mesh_path(path)?;
    let (format, _) = format_of(&path)?;
    if !path.exists() {
        return Err(GeomError::io(
            &path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        ));
    }
    let mut warnings = Vec::new();
    let mesh = match format {
        Format::Obj => obj::read_obj(&path, &mut warnings)?,
        Format::Ply => ply::read_ply(&path, &read_bytes(&path)?)?,
        Format::Off => off::read_off(&path, &read_bytes(&path)?)?,
    };
    mesh.validate(&path)?;
    Ok(MeshFile {
        mesh,
        path,
        warnings,
    })
}

/// Writes a mesh in the format its extension names (`.obj` with its MTL and textures, `.ply`).
pub fn write_mesh(path: &Path, mesh: &TriMesh) -> Result<()> {
    match format_of(path)? {
        (Format::Obj, false) => write_obj(path, mesh),
        (Format::Ply, false) => write_ply(path, mesh),
        _ => Err(GeomError::Invalid {
            path: path.to_path_buf(),
            message: "can only write .obj and .ply".into(),
        }),
    }
}

/// Writes a file through a temporary file in the same folder, renamed into place when complete,
/// so a crash or an error never leaves a half-written file under the final name.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<&mut File>) -> std::io::Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".orbitmesh-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| GeomError::io(path, e))?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        write(&mut w).map_err(|e| GeomError::io(path, e))?;
        std::io::Write::flush(&mut w).map_err(|e| GeomError::io(path, e))?;
    }
    tmp.persist(path)
        .map_err(|e| GeomError::io(path, e.error))?;
    Ok(())
}
