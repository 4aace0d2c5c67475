//! Textured output: a UV atlas for the refined surface and its colours baked into an image.
//!
//! The atlas comes from `uvunwrap` (pure Rust, in the manner of xatlas: charts by normal-cone
//! region growing, LSCM + ARAP flattening, shape packing), so no C++ toolchain is needed; the
//! xatlas bindings on crates.io are unmaintained and build the C++ library from source.

use image::{Rgba, RgbaImage};
use orbitmesh_geom::{Material, TriMesh};

use crate::DmtetError;

/// Texels of empty space around each chart, filled by dilation so filtering and mipmaps do not
/// bleed the background into the seams.
const PADDING: u32 = 4;

/// A mesh with texture coordinates (OBJ convention: v up) and its texture.
pub struct Textured {
    pub mesh: TriMesh,
    pub texture: RgbaImage,
}

/// Unwraps `mesh` (which must carry vertex colours) into a `size`² atlas and bakes the colours,
/// interpolated across each face as a renderer does, into it. Vertices on chart seams are split;
/// the triangles keep their order.
pub fn bake(mesh: &TriMesh, size: u32) -> Result<Textured, DmtetError> {
    let colours = mesh
        .colors
        .as_ref()
        .ok_or_else(|| DmtetError::Refine("baking a texture needs vertex colours".into()))?;
    let indices: Vec<u32> = mesh.faces.iter().flatten().copied().collect();
    let options = uvunwrap::Options {
        density: uvunwrap::Density::Auto { page_size: size },
        padding: PADDING,
        ..uvunwrap::Options::default()
    };
    let atlas = uvunwrap::generate(
        &[uvunwrap::MeshInput::new(&mesh.positions, &indices)],
        &options,
    )
    .map_err(|e| DmtetError::Refine(format!("UV atlas: {e}")))?;
    if atlas.page_count > 1 {
        return Err(DmtetError::Refine(format!(
            "the UV atlas needs {} pages of {size}²: use a larger texture",
            atlas.page_count
        )));
    }
    let out = &atlas.meshes[0];
    let (w, h) = (atlas.width.max(1), atlas.height.max(1));
    let texel = |v: &uvunwrap::OutputVertex| [v.uv[0] * w as f32, v.uv[1] * h as f32];
    let mut image = RgbaImage::new(w, h);
    for face in out.indices.chunks_exact(3) {
        let v = [0, 1, 2].map(|k| &out.vertices[face[k] as usize]);
        let p = v.map(texel);
        let c = v.map(|v| colours[v.xref as usize]);
        fill_triangle(&mut image, p, c);
    }
    dilate(&mut image, 2 * PADDING);
    // The texture stays square as asked, whatever rows the packer used.
    let mut texture = RgbaImage::new(size, size);
    image::imageops::replace(&mut texture, &image, 0, 0);
    let scale = [w as f32 / size as f32, h as f32 / size as f32];
    let mut textured = TriMesh::new(
        out.vertices
            .iter()
            .map(|v| mesh.positions[v.xref as usize])
            .collect(),
        out.indices
            .chunks_exact(3)
            .map(|f| [f[0], f[1], f[2]])
            .collect(),
    );
    textured.uvs = Some(
        out.vertices
            .iter()
            .map(|v| [v.uv[0] * scale[0], 1.0 - v.uv[1] * scale[1]])
            .collect(),
    );
    textured.colors = Some(
        out.vertices
            .iter()
            .map(|v| colours[v.xref as usize])
            .collect(),
    );
    Ok(Textured {
        mesh: textured,
        texture,
    })
}

/// Attaches `texture_path` as the mesh's one material (the file is written by the caller).
pub fn with_material(mut mesh: TriMesh, texture_path: &std::path::Path) -> TriMesh {
    let mut material = Material::new("refined");
    material.diffuse = [1.0; 3];
    material.diffuse_texture = Some(texture_path.to_path_buf());
    mesh.materials = vec![material];
    mesh.face_materials = vec![0; mesh.faces.len()];
    mesh
}

/// Sets every texel whose centre lies in the triangle `p` (texel coordinates) to the colours `c`
/// interpolated there.
fn fill_triangle(image: &mut RgbaImage, p: [[f32; 2]; 3], c: [[f32; 3]; 3]) {
    let area =
        (p[1][0] - p[0][0]) * (p[2][1] - p[0][1]) - (p[1][1] - p[0][1]) * (p[2][0] - p[0][0]);
    if area.abs() < 1e-12 {
        return;
    }
    let min = |k: usize| p.iter().map(|q| q[k]).fold(f32::INFINITY, f32::min);
    let max = |k: usize| p.iter().map(|q| q[k]).fold(f32::NEG_INFINITY, f32::max);
    let (x0, x1) = (
        (min(0) - 0.5).floor().max(0.0) as u32,
        (max(0) + 0.5).ceil() as u32,
    );
    let (y0, y1) = (
        (min(1) - 0.5).floor().max(0.0) as u32,
        (max(1) + 0.5).ceil() as u32,
    );
    for y in y0..y1.min(image.height()) {
        for x in x0..x1.min(image.width()) {
            let q = [x as f32 + 0.5, y as f32 + 0.5];
            let edge = |a: [f32; 2], b: [f32; 2]| {
                ((b[0] - a[0]) * (q[1] - a[1]) - (b[1] - a[1]) * (q[0] - a[0])) / area
            };
            let b = [edge(p[1], p[2]), edge(p[2], p[0]), edge(p[0], p[1])];
            // A little slack so texels on shared edges are not left empty between two faces.
            if b.iter().any(|&v| v < -1e-4) {
                continue;
            }
            let rgb = [0, 1, 2].map(|k| {
                let v = b[0] * c[0][k] + b[1] * c[1][k] + b[2] * c[2][k];
                (v.clamp(0.0, 1.0) * 255.0).round() as u8
            });
            image.put_pixel(x, y, Rgba([rgb[0], rgb[1], rgb[2], 255]));
        }
    }
}

/// Grows the filled (opaque) texels outwards `passes` times, each empty texel taking the mean of
/// its filled neighbours.
fn dilate(image: &mut RgbaImage, passes: u32) {
    let (w, h) = (image.width() as i64, image.height() as i64);
    for _ in 0..passes {
        let before = image.clone();
        let mut changed = false;
        for y in 0..h {
            for x in 0..w {
                if before.get_pixel(x as u32, y as u32)[3] == 255 {
                    continue;
                }
                let mut sum = [0u32; 3];
                let mut n = 0;
                for (dx, dy) in [
                    (-1, 0),
                    (1, 0),
                    (0, -1),
                    (0, 1),
                    (-1, -1),
                    (1, 1),
                    (-1, 1),
                    (1, -1),
                ] {
                    let (nx, ny) = (x + dx, y + dy);
                    if nx < 0 || ny < 0 || nx >= w || ny >= h {
                        continue;
                    }
                    let p = before.get_pixel(nx as u32, ny as u32);
                    if p[3] == 255 {
                        (0..3).for_each(|k| sum[k] += u32::from(p[k]));
                        n += 1;
                    }
                }
                if n > 0 {
                    let c = sum.map(|s| (s / n) as u8);
                    image.put_pixel(x as u32, y as u32, Rgba([c[0], c[1], c[2], 255]));
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orbitmesh_geom::shapes::uv_sphere;
    use orbitmesh_geom::{read_mesh, write_mesh};

    fn coloured_sphere() -> TriMesh {
        let mut mesh = uv_sphere(0.4, 12, 24);
        let colours = mesh
            .positions
            .iter()
            .map(|p| [0.5 + p[0], 0.5 + p[1], 0.5 + p[2]])
            .collect();
        mesh.colors = Some(colours);
        mesh
    }

    #[test]
    fn the_baked_texture_shows_each_faces_colour_at_its_uv_and_round_trips_through_obj() {
        let mesh = coloured_sphere();
        let baked = bake(&mesh, 256).unwrap();
        assert_eq!(baked.mesh.faces.len(), mesh.faces.len());
        assert_eq!(baked.texture.dimensions(), (256, 256));
        let uvs = baked.mesh.uvs.clone().unwrap();
        assert!(uvs.iter().flatten().all(|t| (0.0..=1.0).contains(t)));
        let colours = baked.mesh.colors.clone().unwrap();
        let mut worst = 0.0f32;
        for f in &baked.mesh.faces {
            let uv = [0, 1].map(|k| f.iter().map(|&v| uvs[v as usize][k]).sum::<f32>() / 3.0);
            let want =
                [0, 1, 2].map(|k| f.iter().map(|&v| colours[v as usize][k]).sum::<f32>() / 3.0);
            let (x, y) = ((uv[0] * 256.0) as u32, ((1.0 - uv[1]) * 256.0) as u32);
            let got = baked.texture.get_pixel(x.min(255), y.min(255));
            for k in 0..3 {
                worst = worst.max((f32::from(got[k]) / 255.0 - want[k]).abs());
            }
        }
        assert!(worst < 0.03, "texel vs interpolated colour: {worst}");

        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("texture.png");
        baked.texture.save(&png).unwrap();
        let obj = dir.path().join("model.obj");
        write_mesh(&obj, &with_material(baked.mesh.clone(), &png)).unwrap();
        let back = read_mesh(&obj).unwrap();
        assert!(back.warnings.is_empty(), "{:?}", back.warnings);
        assert_eq!(back.mesh.faces.len(), mesh.faces.len());
        assert_eq!(back.mesh.uvs.as_ref().map(Vec::len), Some(uvs.len()));
        assert!(
            back.mesh.materials[0]
                .diffuse_texture
                .as_deref()
                .is_some_and(|p| p.is_file()),
            "the MTL names the texture beside the OBJ"
        );
    }

    #[test]
    fn dilation_fills_the_padding_around_charts() {
        let mut image = RgbaImage::new(9, 9);
        image.put_pixel(4, 4, Rgba([200, 100, 50, 255]));
        dilate(&mut image, 2);
        assert_eq!(image.get_pixel(6, 4), &Rgba([200, 100, 50, 255]));
        assert_eq!(image.get_pixel(2, 2), &Rgba([200, 100, 50, 255]));
        assert_eq!(image.get_pixel(7, 4)[3], 0, "only two texels out");
    }

    #[test]
    fn a_mesh_without_colours_is_refused() {
        let mut mesh = coloured_sphere();
        mesh.colors = None;
        assert!(bake(&mesh, 64).is_err());
    }
}
