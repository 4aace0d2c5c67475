use std::io::Write;
use std::path::Path;

use ply_rs_bw::parser::Parser;
use ply_rs_bw::ply::{DefaultElement, Property};

use super::write_atomic;
use crate::error::{GeomError, Result};
use crate::mesh::TriMesh;

fn scalar(e: &DefaultElement, names: &[&str]) -> Option<f32> {
    names
        .iter()
        .find_map(|n| e.get(*n))
        .and_then(Property::to_f32_lossy)
}

fn colour(p: &Property) -> Option<f32> {
    match p {
        Property::Float(v) => Some(*v),
        Property::Double(v) => Some(*v as f32),
        other => other.to_u8_color_lossy().map(|c| f32::from(c) / 255.0),
    }
}

/// Reads ASCII and binary (either endianness) PLY; `bytes` are already ungzipped.
pub(super) fn read_ply(path: &Path, bytes: &[u8]) -> Result<TriMesh> {
    let err = |m: String| GeomError::parse(path, "PLY", m);
    let ply = Parser::<DefaultElement>::new()
        .read_ply(&mut &bytes[..])
        .map_err(|e| err(e.to_string()))?;
    let declared = |name: &str| {
        ply.header
            .elements
            .get(name)
            .map_or(0, |e: &ply_rs_bw::ply::ElementDef| e.count)
    };
    let vertices = ply.payload.get("vertex").map_or(&[][..], Vec::as_slice);
    let faces = ply.payload.get("face").map_or(&[][..], Vec::as_slice);
    // The parser stops quietly at the end of a truncated file: compare with the header's counts.
    if vertices.len() != declared("vertex") || faces.len() != declared("face") {
        return Err(err(format!(
            "truncated: the header declares {} vertices and {} faces, the file holds {} and {}",
            declared("vertex"),
            declared("face"),
            vertices.len(),
            faces.len()
        )));
    }

    let mut mesh = TriMesh::default();
    for (i, v) in vertices.iter().enumerate() {
        let [x, y, z] = [["x"], ["y"], ["z"]].map(|n| scalar(v, &n));
        match (x, y, z) {
            (Some(x), Some(y), Some(z)) => mesh.positions.push([x, y, z]),
            _ => return Err(err(format!("vertex {i} has no numeric x, y and z"))),
        }
    }
    if let Some(first) = vertices.first() {
        let rgb = ["red", "green", "blue"];
        if rgb.iter().all(|n| first.contains_key(*n)) {
            mesh.colors = Some(
                vertices
                    .iter()
                    .map(|v| rgb.map(|n| v.get(n).and_then(colour).unwrap_or(1.0)))
                    .collect(),
            );
        }
        let uv = [["s", "u", "texture_u"], ["t", "v", "texture_v"]];
        if uv
            .iter()
            .all(|names| names.iter().any(|n| first.contains_key(*n)))
        {
            mesh.uvs = Some(
                vertices
                    .iter()
                    .map(|v| uv.map(|names| scalar(v, &names).unwrap_or(0.0)))
                    .collect(),
            );
        }
    }
    for (i, f) in faces.iter().enumerate() {
        let indices = ["vertex_indices", "vertex_index"]
            .iter()
            .find_map(|n| f.get(*n))
            .ok_or_else(|| err(format!("face {i} has no vertex_indices list")))?
            .to_u32_list()
            .ok_or_else(|| {
                err(format!(
                    "face {i}: vertex indices must be a list of non-negative integers"
                ))
            })?;
        // Polygons become triangle fans, as every other reader does.
        for k in 1..indices.len().saturating_sub(1) {
            mesh.faces.push([indices[0], indices[k], indices[k + 1]]);
        }
    }
    Ok(mesh)
}

/// Writes binary little-endian PLY with positions, and colours and UVs when the mesh has them.
pub fn write_ply(path: &Path, mesh: &TriMesh) -> Result<()> {
    mesh.validate(path)?;
    write_atomic(path, |w| {
        writeln!(
            w,
            "ply\nformat binary_little_endian 1.0\ncomment written by orbitmesh"
        )?;
        writeln!(w, "element vertex {}", mesh.positions.len())?;
        writeln!(w, "property float x\nproperty float y\nproperty float z")?;
        if mesh.colors.is_some() {
            writeln!(
                w,
                "property uchar red\nproperty uchar green\nproperty uchar blue"
            )?;
        }
        if mesh.uvs.is_some() {
            writeln!(w, "property float s\nproperty float t")?;
        }
        writeln!(w, "element face {}", mesh.faces.len())?;
        writeln!(w, "property list uchar uint vertex_indices\nend_header")?;
        for (i, p) in mesh.positions.iter().enumerate() {
            for c in p {
                w.write_all(&c.to_le_bytes())?;
            }
            if let Some(colors) = &mesh.colors {
                let rgb = colors[i].map(|c| (c.clamp(0.0, 1.0) * 255.0).round() as u8);
                w.write_all(&rgb)?;
            }
            if let Some(uvs) = &mesh.uvs {
                for c in uvs[i] {
                    w.write_all(&c.to_le_bytes())?;
                }
            }
        }
        for f in &mesh.faces {
            w.write_all(&[3])?;
            for i in f {
                w.write_all(&i.to_le_bytes())?;
            }
        }
        Ok(())
    })
}
