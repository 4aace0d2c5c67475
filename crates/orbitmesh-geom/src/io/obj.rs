use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

use super::{StagedFiles, open};
use crate::error::{GeomError, Result};
use crate::mesh::{Material, TriMesh};

/// Whether every colour statement of an MTL file (`Ka`, `Kd`, `Ks`, `Ke`) has at least three
/// values: tobj 4.0.5 panics on fewer (found by fuzzing: a file cut short after `Kd 0.8`).
fn colours_have_three_numbers(mtl: &[u8]) -> bool {
    mtl.split(|&b| b == b'\n' || b == b'\r').all(|line| {
        let mut words = line
            .split(|b| b.is_ascii_whitespace())
            .filter(|w| !w.is_empty());
        match words.next() {
            Some(b"Ka" | b"Kd" | b"Ks" | b"Ke") => words.count() >= 3,
            _ => true,
        }
    })
}

pub(super) fn read_obj(path: &Path, warnings: &mut Vec<String>) -> Result<TriMesh> {
    let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let options = tobj::LoadOptions {
        single_index: true,
        triangulate: true,
        ignore_points: true,
        ignore_lines: true,
    };
    let mut reader = open(path)?;
    let (models, materials) = tobj::load_obj_buf(&mut reader, &options, |mtl| {
        let mtl_path = dir.join(mtl);
        let Ok(text) = std::fs::read(&mtl_path) else {
            return Err(tobj::LoadError::OpenFileFailed);
        };
        if !colours_have_three_numbers(&text) {
            return Err(tobj::LoadError::MaterialParseError);
        }
        tobj::load_mtl_buf(&mut BufReader::new(text.as_slice()))
    })
    .map_err(|e| GeomError::parse(path, "OBJ", e))?;

    let materials = match materials {
        Ok(m) => m,
        Err(e) => {
            warnings.push(format!(
                "{}: its material library could not be read ({e}); reading it untextured",
                path.display()
            ));
            Vec::new()
        }
    };
    let materials: Vec<Material> = materials
        .into_iter()
        .map(|m| {
            let mut texture = |file: Option<&str>| {
                let t = dir.join(file?.replace('\\', "/"));
                if t.is_file() {
                    Some(t)
                } else {
                    warnings.push(format!(
                        "{}: material {} names texture {}, which does not exist; reading it untextured",
                        path.display(),
                        m.name,
                        t.display()
                    ));
                    None
                }
            };
            Material {
                diffuse_texture: texture(m.diffuse_texture.as_deref()),
                normal_texture: texture(m.normal_texture.as_deref()),
                name: m.name,
                diffuse: m.diffuse.unwrap_or([1.0; 3]),
            }
        })
        .collect();

    let mut mesh = TriMesh::default();
    let has_uvs = models.iter().any(|m| !m.mesh.texcoords.is_empty());
    let has_colors = models.iter().any(|m| !m.mesh.vertex_color.is_empty());
    let mut uvs = Vec::new();
    let mut colors = Vec::new();
    for model in &models {
        let m = &model.mesh;
        let base = mesh.positions.len() as u32;
        let count = m.positions.len() / 3;
        mesh.positions
            .extend(m.positions.chunks_exact(3).map(|p| [p[0], p[1], p[2]]));
        if has_uvs {
            if m.texcoords.len() == 2 * count {
                uvs.extend(m.texcoords.chunks_exact(2).map(|t| [t[0], t[1]]));
            } else {
                uvs.extend(std::iter::repeat_n([0.0; 2], count));
            }
        }
        if has_colors {
            if m.vertex_color.len() == 3 * count {
                colors.extend(m.vertex_color.chunks_exact(3).map(|c| [c[0], c[1], c[2]]));
            } else {
                colors.extend(std::iter::repeat_n([1.0; 3], count));
            }
        }
        let tris = m.indices.len() / 3;
        mesh.faces.extend(
            m.indices
                .chunks_exact(3)
                .map(|f| [f[0] + base, f[1] + base, f[2] + base]),
        );
        if !materials.is_empty() {
            let id = m.material_id.filter(|&i| i < materials.len()).unwrap_or(0) as u32;
            mesh.face_materials.extend(std::iter::repeat_n(id, tris));
        }
    }
    mesh.uvs = has_uvs.then_some(uvs);
    mesh.colors = has_colors.then_some(colors);
    mesh.materials = materials;
    Ok(mesh)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Writes `path` (.obj), and beside it `<stem>.mtl` and the materials' texture files when the mesh
/// has materials. Textures are copied next to the OBJ under their own file names (renamed on a
/// clash), so the written folder is self-contained. All or nothing: on an error none of the files
/// appears.
pub fn write_obj(path: &Path, mesh: &TriMesh) -> Result<()> {
    mesh.validate(path)?;
    let mut files = StagedFiles::default();
    let dir = path.parent().unwrap_or(Path::new("."));
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let mtl_path = dir.join(format!("{stem}.mtl"));

    let mut texture_names: HashMap<PathBuf, String> = HashMap::new();
    for tex in mesh
        .materials
        .iter()
        .flat_map(|m| [&m.diffuse_texture, &m.normal_texture])
        .flatten()
    {
        if texture_names.contains_key(tex) {
            continue;
        }
        let mut name = file_name(tex);
        let mut k = 1;
        while texture_names.values().any(|n| *n == name) {
            name = format!("{k}_{}", file_name(tex));
            k += 1;
        }
        let target = dir.join(&name);
        let same = std::fs::canonicalize(tex).ok() == std::fs::canonicalize(&target).ok();
        if !same {
            let bytes = std::fs::read(tex).map_err(|e| GeomError::io(tex, e))?;
            files.write(&target, |w| w.write_all(&bytes))?;
        }
        texture_names.insert(tex.clone(), name);
    }

    if !mesh.materials.is_empty() {
        files.write(&mtl_path, |w| {
            writeln!(w, "# written by orbitmesh")?;
            for m in &mesh.materials {
                writeln!(w, "newmtl {}", m.name)?;
                let [r, g, b] = m.diffuse;
                writeln!(w, "Kd {r} {g} {b}")?;
                if let Some(t) = &m.diffuse_texture {
                    writeln!(w, "map_Kd {}", texture_names[t])?;
                }
                // Blender's importer and tobj read map_Bump as the normal map.
                if let Some(t) = &m.normal_texture {
                    writeln!(w, "map_Bump {}", texture_names[t])?;
                }
            }
            Ok(())
        })?;
    }

    files.write(path, |w| {
        writeln!(w, "# written by orbitmesh")?;
        if !mesh.materials.is_empty() {
            writeln!(w, "mtllib {}", file_name(&mtl_path))?;
        }
        for (i, [x, y, z]) in mesh.positions.iter().enumerate() {
            match &mesh.colors {
                Some(c) => {
                    let [r, g, b] = c[i];
                    writeln!(w, "v {x} {y} {z} {r} {g} {b}")?
                }
                None => writeln!(w, "v {x} {y} {z}")?,
            }
        }
        if let Some(uvs) = &mesh.uvs {
            for [u, v] in uvs {
                writeln!(w, "vt {u} {v}")?;
            }
        }
        // Smooth normals, so importers (Blender's among them) shade the surface without faceting.
        for [x, y, z] in mesh.seamless_normals() {
            writeln!(w, "vn {x} {y} {z}")?;
        }
        let mut current = None;
        for (f, [a, b, c]) in mesh.faces.iter().enumerate() {
            if let Some(&m) = mesh.face_materials.get(f)
                && current != Some(m)
            {
                writeln!(w, "usemtl {}", mesh.materials[m as usize].name)?;
                current = Some(m);
            }
            let (a, b, c) = (a + 1, b + 1, c + 1);
            if mesh.uvs.is_some() {
                writeln!(w, "f {a}/{a}/{a} {b}/{b}/{b} {c}/{c}/{c}")?;
            } else {
                writeln!(w, "f {a}//{a} {b}//{b} {c}//{c}")?;
            }
        }
        Ok(())
    })?;
    files.commit()
}
