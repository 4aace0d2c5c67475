//! Texture atlases and the texel loops over them: a fresh UV atlas for a mesh, the texels of a
//! triangle, dilation into the charts' padding, and bilinear lookups.
//!
//! The atlas comes from `uvunwrap` (pure Rust, in the manner of xatlas: charts by normal-cone
//! region growing, LSCM + ARAP flattening, shape packing), so no C++ toolchain is needed; the
//! xatlas bindings on crates.io are unmaintained and build the C++ library from source.

use image::{Rgba, RgbaImage};

use crate::error::{GeomError, Result};
use crate::mesh::TriMesh;

/// Texels of empty space around each chart, filled by dilation so filtering and mipmaps do not
/// bleed the background into the seams.
pub const PADDING: u32 = 4;

/// A mesh laid out on a fresh atlas.
pub struct Unwrapped {
    /// The mesh with its vertices split along the charts' seams: positions and colours of the
    /// vertices they were split from, UVs (OBJ convention) on a `size`² texture, no materials.
    /// The faces keep their order.
    pub mesh: TriMesh,
    /// For each vertex, the source mesh's vertex it was split from.
    pub source: Vec<u32>,
    /// The texture's side in texels.
    pub size: u32,
}

impl Unwrapped {
    /// Where vertex `v` lies on the texture, in texels (x right, y down; texel centres at .5).
    pub fn texel(&self, v: u32) -> [f32; 2] {
        let [u, t] = self.mesh.uvs.as_ref().expect("an atlas has UVs")[v as usize];
        [u * self.size as f32, (1.0 - t) * self.size as f32]
    }
}

/// Lays `mesh` out on one `size`² texture, [`PADDING`] texels between charts. Charts break only
/// where the mesh's own vertices do: weld a mesh split at old seams first.
pub fn unwrap(mesh: &TriMesh, size: u32) -> Result<Unwrapped> {
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
    .map_err(|e| GeomError::Texture(format!("UV atlas: {e}")))?;
    if atlas.page_count > 1 {
        return Err(GeomError::Texture(format!(
            "the UV atlas needs {} pages of {size}²: use a larger texture",
            atlas.page_count
        )));
    }
    let out = &atlas.meshes[0];
    // The packer's page is the top-left corner of the square texture; its v runs down.
    let scale = [
        atlas.width.max(1) as f32 / size as f32,
        atlas.height.max(1) as f32 / size as f32,
    ];
    let source: Vec<u32> = out.vertices.iter().map(|v| v.xref).collect();
    let mut unwrapped = TriMesh::new(
        source.iter().map(|&v| mesh.positions[v as usize]).collect(),
        out.indices
            .chunks_exact(3)
            .map(|f| [f[0], f[1], f[2]])
            .collect(),
    );
    unwrapped.uvs = Some(
        out.vertices
            .iter()
            .map(|v| [v.uv[0] * scale[0], 1.0 - v.uv[1] * scale[1]])
            .collect(),
    );
    unwrapped.colors = mesh
        .colors
        .as_ref()
        .map(|c| source.iter().map(|&v| c[v as usize]).collect());
    Ok(Unwrapped {
        mesh: unwrapped,
        source,
        size,
    })
}

/// Calls `visit(x, y, barycentrics)` for every texel of a `width` × `height` image whose centre
/// lies in the triangle `p` (texel coordinates), with a little slack so texels on an edge shared
/// by two faces are not left to neither.
pub fn for_each_texel(
    width: u32,
    height: u32,
    p: [[f32; 2]; 3],
    mut visit: impl FnMut(u32, u32, [f32; 3]),
) {
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
    for y in y0..y1.min(height) {
        for x in x0..x1.min(width) {
            let q = [x as f32 + 0.5, y as f32 + 0.5];
            let edge = |a: [f32; 2], b: [f32; 2]| {
                ((b[0] - a[0]) * (q[1] - a[1]) - (b[1] - a[1]) * (q[0] - a[0])) / area
            };
            let b = [edge(p[1], p[2]), edge(p[2], p[0]), edge(p[0], p[1])];
            if b.iter().all(|&v| v >= -1e-4) {
                visit(x, y, b);
            }
        }
    }
}

/// An opaque texel of colour `rgb` (0..1).
pub fn texel_colour(rgb: [f32; 3]) -> Rgba<u8> {
    let c = rgb.map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8);
    Rgba([c[0], c[1], c[2], 255])
}

/// Grows the filled (opaque) texels outwards `passes` times, each empty texel taking the mean of
/// its filled neighbours.
pub fn dilate(image: &mut RgbaImage, passes: u32) {
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

/// Bilinear lookup at (u, v), OBJ convention (v = 0 at the bottom row), the stored bytes scaled
/// to 0..1. Coordinates repeat outside 0..1, but the filter does not reach across the image
/// border: textures are atlases, whose opposite edges are unrelated.
pub fn sample(image: &RgbaImage, u: f32, v: f32) -> [f32; 3] {
    let (width, height) = image.dimensions();
    let (w, h) = (width as f32, height as f32);
    let x = (u - u.floor()) * w - 0.5;
    let y = (1.0 - (v - v.floor())) * h - 0.5;
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let clamp = |i: f32, n: u32| (i.max(0.0) as u32).min(n - 1);
    let (xa, xb) = (clamp(x0, width), clamp(x0 + 1.0, width));
    let (ya, yb) = (clamp(y0, height), clamp(y0 + 1.0, height));
    let px = |x: u32, y: u32| image.get_pixel(x, y).0;
    let (a, b, c, d) = (px(xa, ya), px(xb, ya), px(xa, yb), px(xb, yb));
    [0, 1, 2].map(|k| {
        let top = f32::from(a[k]) * (1.0 - fx) + f32::from(b[k]) * fx;
        let bottom = f32::from(c[k]) * (1.0 - fx) + f32::from(d[k]) * fx;
        (top * (1.0 - fy) + bottom * fy) / 255.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shapes::uv_sphere;

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
    fn an_atlas_keeps_the_faces_and_their_corners_and_covers_each_texel_once() {
        let sphere = uv_sphere(0.4, 12, 24);
        let atlas = unwrap(&sphere, 256).unwrap();
        assert_eq!(atlas.mesh.faces.len(), sphere.faces.len());
        for (f, g) in sphere.faces.iter().zip(&atlas.mesh.faces) {
            assert_eq!(g.map(|v| atlas.source[v as usize]), *f);
        }
        let uvs = atlas.mesh.uvs.as_ref().unwrap();
        assert!(uvs.iter().flatten().all(|t| (0.0..=1.0).contains(t)));
        // Charts do not overlap: a texel centre lies in one face at most.
        let mut hits = vec![0u8; 256 * 256];
        let mut texels = 0;
        for f in &atlas.mesh.faces {
            for_each_texel(256, 256, f.map(|v| atlas.texel(v)), |x, y, b| {
                assert!((b.iter().sum::<f32>() - 1.0).abs() < 1e-4);
                let b_strict = b.iter().all(|&v| v > 1e-3);
                if b_strict {
                    hits[(y * 256 + x) as usize] += 1;
                }
                texels += 1;
            });
        }
        assert!(hits.iter().all(|&n| n <= 1));
        assert!(texels > 256 * 256 / 4, "the charts fill the page: {texels}");
    }

    #[test]
    fn bilinear_lookups_are_obj_convention_and_stop_at_the_border() {
        let mut image = RgbaImage::new(2, 2);
        image.put_pixel(0, 0, Rgba([255, 0, 0, 255])); // top left
        image.put_pixel(1, 1, Rgba([0, 0, 255, 255])); // bottom right
        assert_eq!(sample(&image, 0.25, 0.75), [1.0, 0.0, 0.0]);
        assert_eq!(sample(&image, 0.75, 0.25), [0.0, 0.0, 1.0]);
        let centre = sample(&image, 0.5, 0.5);
        assert!((centre[0] - 0.25).abs() < 1e-6 && (centre[2] - 0.25).abs() < 1e-6);
        // At the left edge the filter does not wrap to the right column.
        assert_eq!(sample(&image, 0.0, 0.75), [1.0, 0.0, 0.0]);
    }
}
