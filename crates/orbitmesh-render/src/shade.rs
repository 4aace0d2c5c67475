//! From a visibility buffer to pictures: colour (texture, vertex colours, material colour or clay)
//! with supersampled antialiasing, and the per-pixel geometry buffers.

use image::{ImageBuffer, Luma, Rgba, RgbaImage};
use orbitmesh_geom::tangent_frame;
use orbitmesh_geom::texture::sample;
use rayon::prelude::*;

use crate::camera::Camera;
use crate::raster::{NO_TRIANGLE, VisibilityBuffer};
use crate::scene::{Paint, Scene};

/// What shows where no surface is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Background {
    /// RGB is the surface colour alone (straight alpha); uncovered pixels are (0, 0, 0, 0).
    Transparent,
    /// RGB is composited over this colour; alpha still gives the coverage.
    Colour([f32; 3]),
}

fn lerp3<T: Copy>(
    values: &[T],
    face: [u32; 3],
    b: [f32; 3],
    get: impl Fn(T) -> [f32; 3],
) -> [f32; 3] {
    let [a, c, d] = face.map(|i| get(values[i as usize]));
    [0, 1, 2].map(|k| b[0] * a[k] + b[1] * c[k] + b[2] * d[k])
}

/// |cos| between the surface normal at barycentrics `b` of face `f` and the camera's view axis:
/// light from the camera, two-sided.
fn facing(scene: &Scene, camera: &Camera, f: u32, b: [f32; 3]) -> f64 {
    let n = shading_normal(scene, f, b);
    let back = camera.camera_to_world.fixed_view::<3, 1>(0, 2);
    (n[0] as f64 * back[0] + n[1] as f64 * back[1] + n[2] as f64 * back[2]).abs()
}

/// The normal light sees at barycentrics `b` of face `f`: the face's own, or where its material
/// has a normal map, the map's normal turned out of the tangent frame there
/// ([`tangent_frame`], as a glTF viewer builds it).
pub(crate) fn shading_normal(scene: &Scene, f: u32, b: [f32; 3]) -> [f32; 3] {
    let face = scene.faces[f as usize];
    let paint = scene.face_paint[f as usize] as usize;
    let (Some(map), Some(frames), Some(uvs)) = (
        scene.normal_maps[paint],
        &scene.tangent_frames,
        scene.uvs.as_deref(),
    ) else {
        return scene.normals[f as usize];
    };
    let uv = lerp2(uvs, face, b);
    let texel = sample(&scene.textures[map], uv[0], uv[1]).map(|c| 2.0 * c - 1.0);
    let [t, bt, n] = tangent_frame(
        lerp3(&frames.normals, face, b, |n| n),
        lerp3(&frames.tangents, face, b, |t| [t[0], t[1], t[2]]),
        frames.tangents[face[0] as usize][3],
    );
    normalised([0, 1, 2].map(|k| texel[0] * t[k] + texel[1] * bt[k] + texel[2] * n[k]))
}

fn normalised(v: [f32; 3]) -> [f32; 3] {
    let len = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    if len > 0.0 { v.map(|c| c / len) } else { v }
}

fn lerp2(values: &[[f32; 2]], face: [u32; 3], b: [f32; 3]) -> [f32; 2] {
    let [a, c, d] = face.map(|i| values[i as usize]);
    [0, 1].map(|k| b[0] * a[k] + b[1] * c[k] + b[2] * d[k])
}

/// The colour of one visible surface point.
fn surface_colour(scene: &Scene, camera: &Camera, f: u32, bary: [f32; 2]) -> [f32; 3] {
    let b = [1.0 - bary[0] - bary[1], bary[0], bary[1]];
    let face = scene.faces[f as usize];
    let colour = match &scene.paints[scene.face_paint[f as usize] as usize] {
        Paint::Textured { texture, tint } => {
            let [u, v] = lerp2(scene.uvs.as_deref().unwrap_or_default(), face, b);
            let c = sample(&scene.textures[*texture], u, v);
            [c[0] * tint[0], c[1] * tint[1], c[2] * tint[2]]
        }
        Paint::Flat(c) => *c,
        Paint::VertexColours => lerp3(scene.colors.as_deref().unwrap_or_default(), face, b, |c| c),
        // Headlight on a light grey: shape reads clearly from any view.
        Paint::Clay => return [(0.8 * (0.25 + 0.75 * facing(scene, camera, f, b))) as f32; 3],
    };
    match scene.headlight {
        Some(ambient) => {
            let light = ambient + (1.0 - ambient) * facing(scene, camera, f, b) as f32;
            colour.map(|c| c * light)
        }
        None => colour,
    }
}

fn to_byte(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// Colour image at 1/`factor` of the visibility buffer's resolution, each pixel the box average of
/// its factor² samples (factor 2 = 4× supersampling). `camera` is the camera of the buffer.
pub fn shade_rgba(
    scene: &Scene,
    vis: &VisibilityBuffer,
    camera: &Camera,
    factor: u32,
    background: Background,
) -> RgbaImage {
    let factor = factor.max(1) as usize;
    let (w, h) = (vis.width as usize / factor, vis.height as usize / factor);
    let mut pixels = vec![[0u8; 4]; w * h];
    let samples = (factor * factor) as f32;
    pixels
        .par_chunks_mut(w.max(1))
        .enumerate()
        .for_each(|(y, row)| {
            for (x, out) in row.iter_mut().enumerate() {
                let mut sum = [0.0f32; 3];
                let mut covered = 0.0f32;
                for sy in 0..factor {
                    for sx in 0..factor {
                        let i = (y * factor + sy) * vis.width as usize + x * factor + sx;
                        let f = vis.triangle[i];
                        if f != NO_TRIANGLE {
                            let c = surface_colour(scene, camera, f, vis.bary[i]);
                            for k in 0..3 {
                                sum[k] += c[k];
                            }
                            covered += 1.0;
                        }
                    }
                }
                let alpha = covered / samples;
                let rgb = match background {
                    Background::Transparent if covered > 0.0 => sum.map(|s| s / covered),
                    Background::Transparent => [0.0; 3],
                    Background::Colour(bg) => {
                        [0, 1, 2].map(|k| (sum[k] + (samples - covered) * bg[k]) / samples)
                    }
                };
                *out = [
                    to_byte(rgb[0]),
                    to_byte(rgb[1]),
                    to_byte(rgb[2]),
                    to_byte(alpha),
                ];
            }
        });
    ImageBuffer::from_fn(w as u32, h as u32, |x, y| {
        Rgba(pixels[y as usize * w + x as usize])
    })
}

/// World-space unit face normal of each pixel's triangle (zero where nothing is drawn).
pub fn normal_buffer(scene: &Scene, vis: &VisibilityBuffer) -> Vec<[f32; 3]> {
    vis.triangle
        .iter()
        .map(|&f| {
            if f == NO_TRIANGLE {
                [0.0; 3]
            } else {
                scene.normals[f as usize]
            }
        })
        .collect()
}

/// Normals as an RGBA picture: (n + 1)/2 per channel, alpha = covered.
pub fn normal_image(scene: &Scene, vis: &VisibilityBuffer) -> RgbaImage {
    let normals = normal_buffer(scene, vis);
    ImageBuffer::from_fn(vis.width, vis.height, |x, y| {
        let i = (y * vis.width + x) as usize;
        if vis.triangle[i] == NO_TRIANGLE {
            return Rgba([0; 4]);
        }
        let n = normals[i];
        Rgba([
            to_byte(0.5 * (n[0] + 1.0)),
            to_byte(0.5 * (n[1] + 1.0)),
            to_byte(0.5 * (n[2] + 1.0)),
            255,
        ])
    })
}

/// Depth in units of 1/`DEPTH_PNG_SCALE` as a 16-bit greyscale picture; 0 where nothing is drawn.
pub const DEPTH_PNG_SCALE: f32 = 10_000.0;

pub fn depth_image(vis: &VisibilityBuffer) -> ImageBuffer<Luma<u16>, Vec<u16>> {
    ImageBuffer::from_fn(vis.width, vis.height, |x, y| {
        let d = vis.depth[(y * vis.width + x) as usize];
        Luma([if d.is_finite() {
            (d * DEPTH_PNG_SCALE).round().clamp(1.0, 65535.0) as u16
        } else {
            0
        }])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::camera::{Intrinsics, OrbitView, SV3D_FOV_DEG};
    use crate::raster::rasterize_cpu;
    use orbitmesh_geom::{Material, TriMesh};

    /// The plane x = 0 facing +x, u along +y and v along +z (so the tangent is +y and the
    /// bitangent +z), white, with a normal map of one colour.
    fn mapped_quad(dir: &std::path::Path, texel: [f32; 3]) -> Scene {
        let white = dir.join("white.png");
        RgbaImage::from_pixel(4, 4, Rgba([255; 4]))
            .save(&white)
            .unwrap();
        let map = dir.join("normal.png");
        let byte = texel.map(|c| ((0.5 * c + 0.5) * 255.0).round() as u8);
        RgbaImage::from_pixel(4, 4, Rgba([byte[0], byte[1], byte[2], 255]))
            .save(&map)
            .unwrap();
        let mut quad = TriMesh::new(
            vec![
                [0.0, -0.5, -0.5],
                [0.0, 0.5, -0.5],
                [0.0, 0.5, 0.5],
                [0.0, -0.5, 0.5],
            ],
            vec![[0, 1, 2], [0, 2, 3]],
        );
        quad.uvs = Some(vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]);
        quad.materials = vec![Material {
            diffuse_texture: Some(white),
            normal_texture: Some(map),
            ..Material::new("mapped")
        }];
        quad.face_materials = vec![0, 0];
        let mut warnings = Vec::new();
        let scene = Scene::new(&quad, &mut warnings).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        scene
    }

    #[test]
    fn a_normal_map_turns_the_shading_normal_in_its_tangent_frame() {
        let dir = tempfile::tempdir().unwrap();
        let tilt = 40f32.to_radians();
        let (s, c) = tilt.sin_cos();
        // Red tilts towards the tangent (+y), green towards the bitangent (+z).
        for (texel, want) in [
            ([s, 0.0, c], [c, s, 0.0]),
            ([0.0, s, c], [c, 0.0, s]),
            ([0.0, 0.0, 1.0], [1.0, 0.0, 0.0]),
        ] {
            let scene = mapped_quad(dir.path(), texel);
            for f in 0..2 {
                let n = shading_normal(&scene, f, [0.2, 0.3, 0.5]);
                let off = (0..3).map(|k| (n[k] - want[k]).abs()).fold(0.0, f32::max);
                assert!(off < 0.01, "{texel:?}: {n:?}, expected {want:?}");
            }
        }

        // Lit from the camera (+x), the tilted normal's light is ambient + (1 − ambient)·cos.
        let mut scene = mapped_quad(dir.path(), [s, 0.0, c]);
        scene.headlight = Some(0.25);
        let camera = OrbitView {
            elevation_deg: 0.0,
            azimuth_deg: 0.0,
            radius: 2.0,
        }
        .camera(Intrinsics::from_fov(SV3D_FOV_DEG, 64, 64));
        let vis = rasterize_cpu(&scene, &camera);
        let image = shade_rgba(&scene, &vis, &camera, 1, Background::Transparent);
        let centre = image.get_pixel(32, 32)[0];
        let want = (0.25 + 0.75 * c) * 255.0;
        assert!(
            (f32::from(centre) - want).abs() <= 2.0,
            "{centre} vs {want}"
        );
    }
}
