//! Files for game engines: levels of detail at halving face budgets, the up axis the format
//! expects, the object's and its materials' names from the file's, a PBR roughness.

use std::path::Path;

use super::{Format, format_of, write_glb_lods, write_obj, write_ply};
use crate::bake::BakeOptions;
use crate::error::{GeomError, Result};
use crate::frame::UpAxis;
use crate::io::glb::GlbOptions;
use crate::mesh::TriMesh;

/// How [`write_for_engines`] writes a mesh.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineOptions {
    /// Levels of detail: 1 is the mesh alone; each further level has half the faces of the one
    /// before (GLB only).
    pub lods: usize,
    /// The up axis of the written coordinates. GLB is Y up, as glTF requires; OBJ and PLY are Z
    /// up (orbitmesh's frame) unless Y is asked for.
    pub up: Option<UpAxis>,
    /// The materials' PBR roughness (GLB; metallic is 0).
    pub roughness: f32,
    /// Bake the detailed mesh's colour and a normal map onto the decimated one
    /// ([`crate::bake::low_poly`], before writing; GLB or OBJ).
    pub bake: Option<BakeOptions>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lods: 1,
            up: None,
            roughness: 1.0,
            bake: None,
        }
    }
}

impl EngineOptions {
    /// Refuses what the format of `path` (its extension's) cannot hold, before any work.
    pub fn check(&self, path: &Path) -> Result<()> {
        self.check_as(path, format_of(path)?.0)
    }

    /// Refuses what `format` cannot hold, before any work.
    pub fn check_as(&self, path: &Path, format: Format) -> Result<()> {
        let invalid = |message: &str| {
            Err(GeomError::Invalid {
                path: path.to_path_buf(),
                message: message.into(),
            })
        };
        let glb = format == Format::Glb;
        if self.lods == 0 {
            return invalid("--lods must be at least 1");
        }
        if self.lods > 1 && !glb {
            return invalid("levels of detail (--lods) go in one .glb");
        }
        if glb && self.up == Some(UpAxis::Z) {
            return invalid("glTF is Y up by definition; --up z is for .obj and .ply");
        }
        if !(0.0..=1.0).contains(&self.roughness) {
            return invalid("--roughness must be in 0..1");
        }
        if let Some(bake) = &self.bake {
            if format == Format::Ply {
                return invalid("a normal map (--normal-map) needs .glb or .obj");
            }
            if !(64..=8192).contains(&bake.size) {
                return invalid("--texture-size must be in 64..8192");
            }
        }
        Ok(())
    }
}

/// The object's name in the file: the file's name without its extension.
fn object_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "orbitmesh".into())
}

/// Writes `mesh` (Z up) to `path` (.glb, .obj or .ply) for game engines: its levels of detail
/// (the mesh, then at half the faces of the level before), its materials named after the file
/// (`<name>` or `<name>_<i>`), in the up axis the options ask for.
pub fn write_for_engines(path: &Path, mesh: &TriMesh, options: &EngineOptions) -> Result<()> {
    match format_of(path)? {
        (format, false) => write_for_engines_as(path, format, mesh, options),
        _ => Err(GeomError::Invalid {
            path: path.to_path_buf(),
            message: "can only write .obj, .ply and .glb".into(),
        }),
    }
}

/// As [`write_for_engines`], in `format` whatever the file's name.
pub fn write_for_engines_as(
    path: &Path,
    format: Format,
    mesh: &TriMesh,
    options: &EngineOptions,
) -> Result<()> {
    options.check_as(path, format)?;
    let name = object_name(path);
    let mut mesh = mesh.clone();
    let count = mesh.materials.len();
    for (i, m) in mesh.materials.iter_mut().enumerate() {
        m.name = if count == 1 {
            name.clone()
        } else {
            format!("{name}_{i}")
        };
    }
    match format {
        Format::Glb => {
            let mut lods = vec![mesh];
            for _ in 1..options.lods {
                let finer = lods.last().expect("one level at least");
                lods.push(finer.simplified(finer.faces.len().div_ceil(2)));
            }
            let glb = GlbOptions {
                name,
                scale: 1.0,
                roughness: options.roughness,
            };
            write_glb_lods(path, &lods, &glb)
        }
        Format::Obj | Format::Ply => {
            if options.up == Some(UpAxis::Y) {
                mesh.transform(&UpAxis::Y.to_z_up().inverse());
            }
            if format == Format::Ply {
                write_ply(path, &mesh)
            } else {
                write_obj(path, &mesh)
            }
        }
        Format::Off => Err(GeomError::Invalid {
            path: path.to_path_buf(),
            message: "can only write .obj, .ply and .glb".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::read_mesh;
    use crate::shapes;

    fn nodes(path: &Path) -> gltf::json::Root {
        let bytes = std::fs::read(path).unwrap();
        let glb = gltf::binary::Glb::from_slice(&bytes).unwrap();
        gltf::json::deserialize::from_slice(&glb.json).unwrap()
    }

    #[test]
    fn levels_of_detail_halve_the_faces_under_named_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chair.glb");
        let sphere = shapes::uv_sphere(0.5, 32, 64);
        let options = EngineOptions {
            lods: 3,
            roughness: 0.7,
            ..Default::default()
        };
        write_for_engines(&path, &sphere, &options).unwrap();
        let root = nodes(&path);
        let names: Vec<_> = root.nodes.iter().map(|n| n.name.clone().unwrap()).collect();
        assert_eq!(names, ["chair_LOD0", "chair_LOD1", "chair_LOD2", "chair"]);
        let faces: Vec<usize> = (0..3)
            .map(|i| {
                let mesh = &root.meshes[root.nodes[i].mesh.unwrap().value()];
                let indices = mesh.primitives[0].indices.unwrap();
                root.accessors[indices.value()].count.0 as usize / 3
            })
            .collect();
        assert_eq!(faces[0], sphere.faces.len());
        for i in 1..3 {
            let half = faces[i - 1] / 2;
            assert!(
                faces[i] <= half + 1 && faces[i] * 10 >= half * 8,
                "LOD{i}: {faces:?}"
            );
        }
        let lod = root.nodes[0].extensions.as_ref().unwrap();
        assert_eq!(lod.others["MSFT_lod"]["ids"], serde_json::json!([1, 2]));
        let extras: serde_json::Value =
            serde_json::from_str(root.nodes[0].extras.as_ref().unwrap().get()).unwrap();
        assert_eq!(
            extras["MSFT_screencoverage"],
            serde_json::json!([0.5, 0.25, 0.0])
        );
        assert_eq!(root.extensions_used, ["MSFT_lod"]);
        // Only LOD0 is in the scene, under the object's node.
        assert_eq!(root.scenes[0].nodes.len(), 1);
        let top = &root.nodes[root.scenes[0].nodes[0].value()];
        assert_eq!(top.children.as_ref().unwrap()[0].value(), 0);
    }

    #[test]
    fn obj_is_turned_y_up_when_asked_and_glb_refuses_z_up() {
        let dir = tempfile::tempdir().unwrap();
        let tall = shapes::cuboid([0.0, 0.0, 0.0], [1.0, 1.0, 3.0]);
        let obj = dir.path().join("tall.obj");
        let options = EngineOptions {
            up: Some(UpAxis::Y),
            ..Default::default()
        };
        write_for_engines(&obj, &tall, &options).unwrap();
        let back = read_mesh(&obj).unwrap().mesh.bounds();
        assert!(
            (back.max[1] - 3.0).abs() < 1e-6 && back.max[2].abs() < 1e-6,
            "{back:?}"
        );
        let z_glb = EngineOptions {
            up: Some(UpAxis::Z),
            ..Default::default()
        };
        let err = write_for_engines(&dir.path().join("t.glb"), &tall, &z_glb).unwrap_err();
        assert!(err.to_string().contains("Y up"), "{err}");
        let lods_obj = EngineOptions {
            lods: 2,
            ..Default::default()
        };
        let err = write_for_engines(&obj, &tall, &lods_obj).unwrap_err();
        assert!(err.to_string().contains(".glb"), "{err}");
    }
}
