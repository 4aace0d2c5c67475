//! From a visibility buffer to pictures: colour (texture, vertex colours, material colour or clay)
//! with supersampled antialiasing, and the per-pixel geometry buffers.

use image::{ImageBuffer, Luma, Rgba, RgbaImage};
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

/// |cos| between face `f`'s normal and the camera's view axis: light from the camera, two-sided.
fn facing(scene: &Scene, camera: &Camera, f: u32) -> f64 {
    let n = scene.normals[f as usize];
    let back = camera.camera_to_world.fixed_view::<3, 1>(0, 2);
    (n[0] as f64 * back[0] + n[1] as f64 * back[1] + n[2] as f64 * back[2]).abs()
}

/// The colour of one visible surface point.
fn surface_colour(scene: &Scene, camera: &Camera, f: u32, bary: [f32; 2]) -> [f32; 3] {
    let b = [1.0 - bary[0] - bary[1], bary[0], bary[1]];
    let face = scene.faces[f as usize];
    let colour = match &scene.paints[scene.face_paint[f as usize] as usize] {
        Paint::Textured { texture, tint } => {
            let uvs = scene.uvs.as_deref().unwrap_or_default();
            let [t0, t1, t2] = face.map(|i| uvs[i as usize]);
            let u = b[0] * t0[0] + b[1] * t1[0] + b[2] * t2[0];
            let v = b[0] * t0[1] + b[1] * t1[1] + b[2] * t2[1];
            let c = scene.textures[*texture].sample(u, v);
            [c[0] * tint[0], c[1] * tint[1], c[2] * tint[2]]
        }
        Paint::Flat(c) => *c,
        Paint::VertexColours => lerp3(scene.colors.as_deref().unwrap_or_default(), face, b, |c| c),
        // Headlight on a light grey: shape reads clearly from any view.
        Paint::Clay => return [(0.8 * (0.25 + 0.75 * facing(scene, camera, f))) as f32; 3],
    };
    match scene.headlight {
        Some(ambient) => {
            let light = ambient + (1.0 - ambient) * facing(scene, camera, f) as f32;
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
