//! Reading meshes from disk (OBJ+MTL, PLY, OFF, gzipped or not, GSO object folders) and writing
//! them (OBJ+MTL+textures, PLY), always through a temporary file that is renamed into place.

mod engine;
mod glb;
mod obj;
mod off;
mod ply;

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::error::{GeomError, Result};
use crate::mesh::TriMesh;

pub use engine::{EngineOptions, write_for_engines, write_for_engines_as};
pub use glb::{GlbOptions, write_glb, write_glb_lods};
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

/// A mesh file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Obj,
    Ply,
    Off,
    Glb,
}

impl Format {
    /// The format the file's extension names (an error naming the file for any other).
    pub fn of_path(path: &Path) -> Result<Format> {
        format_of(path).map(|(format, _)| format)
    }
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
        Some("glb") if !gz => Format::Glb,
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
        Format::Glb => glb::read_glb(&path, &read_bytes(&path)?)?,
    };
    mesh.validate(&path)?;
    Ok(MeshFile {
        mesh,
        path,
        warnings,
    })
}

/// Writes a mesh in the format its extension names: `.obj` (with its MTL and textures), `.ply`,
/// or `.glb` (Y up, textures embedded, object units).
pub fn write_mesh(path: &Path, mesh: &TriMesh) -> Result<()> {
    match format_of(path)? {
        (Format::Obj, false) => write_obj(path, mesh),
        (Format::Ply, false) => write_ply(path, mesh),
        (Format::Glb, false) => write_glb(path, mesh, 1.0),
        _ => Err(GeomError::Invalid {
            path: path.to_path_buf(),
            message: "can only write .obj, .ply and .glb".into(),
        }),
    }
}

/// Writes a file through a temporary file in the same folder, renamed into place when complete,
/// so a crash or an error never leaves a half-written file under the final name.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<&mut File>) -> std::io::Result<()>,
) -> Result<()> {
    let mut files = StagedFiles::default();
    files.write(path, write)?;
    files.commit()
}

/// Files that appear together or not at all (an OBJ with its MTL and textures): each is written
/// to a temporary file beside its final name, and only once all are complete are they renamed
/// into place. Dropped uncommitted (an error on the way), every temporary file is removed.
#[derive(Default)]
pub struct StagedFiles {
    staged: Vec<(tempfile::NamedTempFile, PathBuf)>,
}

impl StagedFiles {
    pub fn write(
        &mut self,
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
        // Temporary files are created private (0600); the result is an ordinary file.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))
                .map_err(|e| GeomError::io(path, e))?;
        }
        self.staged.push((tmp, path.to_path_buf()));
        Ok(())
    }

    /// Renames every file into place. Renames within a folder do not need space, so this fails
    /// only if a folder changed under us; then the files already renamed are removed again.
    pub fn commit(self) -> Result<()> {
        let mut placed: Vec<PathBuf> = Vec::new();
        for (tmp, path) in self.staged {
            if let Err(e) = tmp.persist(&path) {
                for p in &placed {
                    let _ = std::fs::remove_file(p);
                }
                return Err(GeomError::io(&path, e.error));
            }
            placed.push(path);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::Material;
    use crate::shapes;
    use std::io::Write;

    fn write(dir: &Path, name: &str, body: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    fn textured_quad(dir: &Path) -> TriMesh {
        let tex = write(dir, "src-texture.png", b"not decoded by the mesh reader");
        let normals = write(dir, "src-normal.png", b"nor this");
        let mut m = TriMesh::new(
            vec![
                [0.0, 0.0, 0.0],
                [1.0, 0.0, 0.0],
                [1.0, 1.0, 0.0],
                [0.0, 1.0, 0.5],
            ],
            vec![[0, 1, 2], [0, 2, 3]],
        );
        m.uvs = Some(vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]);
        m.materials = vec![
            Material {
                diffuse_texture: Some(tex),
                normal_texture: Some(normals),
                ..Material::new("skin")
            },
            Material {
                diffuse: [0.5, 0.25, 1.0],
                ..Material::new("paint")
            },
        ];
        m.face_materials = vec![0, 1];
        m
    }

    #[test]
    fn obj_round_trip_keeps_uvs_materials_and_textures() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let mesh = textured_quad(dir.path());
        write_mesh(&out.join("model.obj"), &mesh).unwrap();
        assert!(out.join("model.mtl").is_file());
        assert!(out.join("src-texture.png").is_file());
        let back = read_mesh(&out).unwrap();
        assert!(back.warnings.is_empty(), "{:?}", back.warnings);
        let back = back.mesh;
        // tobj splits vertices per material, so compare face by face, corner by corner.
        assert_eq!(back.faces.len(), mesh.faces.len());
        let uvs = |m: &TriMesh, f: usize| m.faces[f].map(|i| m.uvs.as_ref().unwrap()[i as usize]);
        for f in 0..mesh.faces.len() {
            assert_eq!(back.triangle(f), mesh.triangle(f));
            assert_eq!(uvs(&back, f), uvs(&mesh, f));
        }
        assert_eq!(back.face_materials, mesh.face_materials);
        assert_eq!(back.materials[1].diffuse, [0.5, 0.25, 1.0]);
        assert_eq!(
            back.materials[0].diffuse_texture.as_deref(),
            Some(out.join("src-texture.png").as_path())
        );
        assert_eq!(
            back.materials[0].normal_texture.as_deref(),
            Some(out.join("src-normal.png").as_path())
        );
        assert_eq!(back.materials[1].normal_texture, None);
        // Nothing temporary left behind.
        let names: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 4, "{names:?}");
    }

    #[test]
    fn ply_round_trip_and_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let mut mesh = shapes::cuboid([0.0; 3], [1.0, 2.0, 3.0]);
        mesh.colors = Some(vec![[1.0, 0.0, 0.2]; 8]);
        let p = dir.path().join("box.ply");
        write_mesh(&p, &mesh).unwrap();
        let back = read_mesh(&p).unwrap().mesh;
        assert_eq!(back.positions, mesh.positions);
        assert_eq!(back.faces, mesh.faces);
        assert_eq!(
            back.colors.unwrap()[0],
            [1.0, 0.0, 0.2f32].map(|c| (c * 255.0f32).round() / 255.0)
        );

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&std::fs::read(&p).unwrap()).unwrap();
        let pgz = write(dir.path(), "box.ply.gz", &gz.finish().unwrap());
        assert_eq!(read_mesh(&pgz).unwrap().mesh.faces, mesh.faces);
    }

    #[test]
    fn ascii_ply_with_quads_and_off() {
        let dir = tempfile::tempdir().unwrap();
        let ply = b"ply\nformat ascii 1.0\nelement vertex 4\nproperty double x\nproperty double y\nproperty double z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n";
        let m = read_mesh(&write(dir.path(), "q.ply", ply)).unwrap().mesh;
        assert_eq!(m.faces, vec![[0, 1, 2], [0, 2, 3]]);
        let off = b"OFF\n# a comment\n4 1 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n";
        let m = read_mesh(&write(dir.path(), "q.off", off)).unwrap().mesh;
        assert_eq!(m.faces, vec![[0, 1, 2], [0, 2, 3]]);
        assert_eq!(m.positions[2], [1.0, 1.0, 0.0]);
    }

    #[test]
    fn gso_folder_with_texture() {
        let bowl = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/gso-mini/GSO_bead_bowl");
        let f = read_mesh(&bowl).unwrap();
        assert_eq!(f.mesh.faces.len(), 14030);
        assert!(f.mesh.positions.len() >= 7017);
        assert!(f.mesh.uvs.is_some());
        assert!(
            f.mesh.materials[0]
                .diffuse_texture
                .as_ref()
                .unwrap()
                .ends_with("texture.png")
        );
    }

    /// Found by fuzzing (crates/orbitmesh-fuzz): tobj panicked on a colour with fewer than three
    /// values, here a material library cut short.
    #[test]
    fn a_colour_cut_short_in_the_material_library_is_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "m.mtl", b"newmtl a\nKd 0.8");
        let p = write(
            dir.path(),
            "m.obj",
            b"mtllib m.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nusemtl a\nf 1 2 3\n",
        );
        let f = read_mesh(&p).unwrap();
        assert_eq!(f.warnings.len(), 1, "{:?}", f.warnings);
        assert!(f.warnings[0].contains("material library"));
        assert!(f.mesh.materials.is_empty());
    }

    #[test]
    fn missing_texture_is_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "m.mtl", b"newmtl a\nmap_Kd gone.png\n");
        let p = write(
            dir.path(),
            "m.obj",
            b"mtllib m.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nusemtl a\nf 1 2 3\n",
        );
        let f = read_mesh(&p).unwrap();
        assert_eq!(f.warnings.len(), 1);
        assert!(f.warnings[0].contains("gone.png"));
        assert_eq!(f.mesh.materials[0].diffuse_texture, None);
    }

    /// Every kind of bad input is an error naming the file, never a panic.
    #[test]
    fn bad_input_is_a_typed_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut good = Vec::new();
        {
            let p = d.join("good.ply");
            write_mesh(&p, &shapes::cuboid([0.0; 3], [1.0; 3])).unwrap();
            good.extend(std::fs::read(&p).unwrap());
        }
        let cases: Vec<(PathBuf, &str)> = vec![
            (d.join("missing.obj"), "no such file"),
            (write(d, "empty.obj", b"v 0 0 0\nv 1 0 0\n"), "no faces"),
            (write(d, "range.ply", b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n"), "vertex 7"),
            (write(d, "range.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n"), "out of bounds"),
            (write(d, "nan.obj", b"v 0 0 0\nv nan 0 0\nv 0 1 0\nf 1 2 3\n"), "non-finite"),
            (write(d, "nan.off", b"OFF\n3 1 0\n0 0 0\n1 NaN 0\n0 1 0\n3 0 1 2\n"), "non-finite"),
            (write(d, "cut.ply", &good[..good.len() - 7]), "truncated"),
            (write(d, "mesh.stl", b"solid x\nendsolid x\n"), "unknown mesh format"),
            (write(d, "junk.ply", b"\x00\x01garbage"), "PLY"),
            (write(d, "short.off", b"OFF\n3 1 0\n0 0 0\n"), "truncated"),
        ];
        for (path, expect) in cases {
            let e = read_mesh(&path).expect_err(&path.display().to_string());
            let msg = e.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(
                msg.to_lowercase().contains(&expect.to_lowercase()),
                "{path:?}: {msg}"
            );
            assert!(!msg.contains('\n'), "{msg}");
        }
    }
}
