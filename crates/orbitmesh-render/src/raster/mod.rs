//! Rasterization into a visibility buffer (triangle id and perspective-correct barycentrics per
//! pixel, plus view depth): the one output both the CPU and the wgpu path produce, from which
//! everything else (colour, alpha, normals, the fine stage's gradients) is computed.

mod cpu;
mod gpu;

pub use cpu::rasterize_cpu;
pub use gpu::{GpuRasterizer, vulkan_adapter};

use nalgebra::{Matrix4, Vector4};

use crate::RenderError;
use crate::camera::Camera;
use crate::scene::Scene;

/// Marks pixels no triangle covers.
pub const NO_TRIANGLE: u32 = u32::MAX;

/// Triangles with a vertex closer than this to the camera plane are not drawn (no clipping: the
/// orbit cameras sit well outside normalised objects).
pub const NEAR: f64 = 0.05;
pub const FAR: f64 = 100.0;

/// Largest image side accepted.
pub const MAX_SIDE: u32 = 16384;

#[derive(Debug, Clone, PartialEq)]
pub struct VisibilityBuffer {
    pub width: u32,
    pub height: u32,
    /// Triangle covering each pixel centre, or `NO_TRIANGLE`.
    pub triangle: Vec<u32>,
    /// Perspective-correct barycentrics (b1, b2) of the pixel centre; b0 = 1 − b1 − b2.
    pub bary: Vec<[f32; 2]>,
    /// View depth (distance along the camera axis); infinity where nothing is drawn.
    pub depth: Vec<f32>,
}

impl VisibilityBuffer {
    pub fn empty(width: u32, height: u32) -> Self {
        let n = width as usize * height as usize;
        VisibilityBuffer {
            width,
            height,
            triangle: vec![NO_TRIANGLE; n],
            bary: vec![[0.0; 2]; n],
            depth: vec![f32::INFINITY; n],
        }
    }

    pub fn covered(&self) -> usize {
        self.triangle.iter().filter(|&&t| t != NO_TRIANGLE).count()
    }
}

/// The world → clip matrix of a camera for wgpu's conventions (x, y in −1..1 with y up, z in 0..1),
/// with w = view depth; both paths project through it so they agree to rounding.
pub fn clip_from_world(camera: &Camera) -> Matrix4<f64> {
    let k = &camera.intrinsics;
    let (w, h) = (f64::from(k.width), f64::from(k.height));
    // Camera coordinates: x right, y up, depth d = −z.
    #[rustfmt::skip]
    let projection = Matrix4::new(
        2.0 * k.fx / w, 0.0, -(2.0 * k.cx / w - 1.0), 0.0,
        0.0, 2.0 * k.fy / h, -(1.0 - 2.0 * k.cy / h), 0.0,
        0.0, 0.0, -FAR / (FAR - NEAR), -FAR * NEAR / (FAR - NEAR),
        0.0, 0.0, -1.0, 0.0,
    );
    projection * camera.world_to_camera()
}

/// A vertex in pixel coordinates (x right, y down) with its view depth.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScreenVertex {
    pub x: f64,
    pub y: f64,
    pub depth: f64,
}

pub(crate) fn project_vertices(scene: &Scene, camera: &Camera) -> Vec<ScreenVertex> {
    use rayon::prelude::*;
    let m = clip_from_world(camera);
    let (w, h) = (
        f64::from(camera.intrinsics.width),
        f64::from(camera.intrinsics.height),
    );
    scene
        .positions
        .par_iter()
        .map(|p| {
            let c = m * Vector4::new(p[0].into(), p[1].into(), p[2].into(), 1.0);
            ScreenVertex {
                x: (c.x / c.w + 1.0) * 0.5 * w,
                y: (1.0 - c.y / c.w) * 0.5 * h,
                depth: c.w,
            }
        })
        .collect()
}

/// Checks an image size before any work.
pub fn check_size(width: u32, height: u32) -> Result<(), RenderError> {
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(RenderError::Size {
            width,
            height,
            max: MAX_SIDE,
        });
    }
    Ok(())
}

/// Which rasterizer renders.
pub enum Rasterizer {
    Cpu,
    Gpu(Box<GpuRasterizer>),
}

impl Rasterizer {
    pub fn rasterize(
        &self,
        scene: &Scene,
        camera: &Camera,
    ) -> Result<VisibilityBuffer, RenderError> {
        check_size(camera.intrinsics.width, camera.intrinsics.height)?;
        match self {
            Rasterizer::Cpu => Ok(rasterize_cpu(scene, camera)),
            Rasterizer::Gpu(g) => g.rasterize(scene, camera),
        }
    }

    pub fn rasterize_all(
        &self,
        scene: &Scene,
        cameras: &[Camera],
    ) -> Result<Vec<VisibilityBuffer>, RenderError> {
        for c in cameras {
            check_size(c.intrinsics.width, c.intrinsics.height)?;
        }
        match self {
            Rasterizer::Cpu => Ok(cameras.iter().map(|c| rasterize_cpu(scene, c)).collect()),
            Rasterizer::Gpu(g) => g.rasterize_all(scene, cameras),
        }
    }

    pub fn name(&self) -> String {
        match self {
            Rasterizer::Cpu => "cpu".into(),
            Rasterizer::Gpu(g) => format!("gpu ({})", g.adapter_name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::camera::{Intrinsics, OrbitView, SV3D_FOV_DEG};
    use crate::shade::{Background, shade_rgba};
    use orbitmesh_geom::{Material, TriMesh, shapes};

    fn front_camera(res: u32) -> Camera {
        OrbitView {
            elevation_deg: 0.0,
            azimuth_deg: 0.0,
            radius: 2.0,
        }
        .camera(Intrinsics::from_fov(SV3D_FOV_DEG, res, res))
    }

    #[test]
    fn cube_along_an_axis_covers_the_expected_pixels_at_the_expected_depth() {
        let scene = Scene::new(&shapes::cuboid([-0.25; 3], [0.25; 3]), &mut Vec::new()).unwrap();
        let cam = front_camera(256);
        let vis = rasterize_cpu(&scene, &cam);
        // The front face (x = 0.25) is 1.75 away; the sides are hidden behind it.
        let side = 2.0 * cam.intrinsics.fx * 0.25 / 1.75;
        let expected = side * side;
        let got = vis.covered() as f64;
        assert!(
            (got - expected).abs() / expected < 0.01,
            "{got} px, expected {expected}"
        );
        let centre = (128 * 256 + 128) as usize;
        assert!(
            (f64::from(vis.depth[centre]) - 1.75).abs() < 1e-4,
            "{}",
            vis.depth[centre]
        );
    }

    #[test]
    fn degenerate_triangles_are_skipped() {
        let mut mesh = shapes::cuboid([-0.25; 3], [0.25; 3]);
        mesh.positions.push([0.0, 0.1, 0.1]);
        let last = mesh.positions.len() as u32 - 1;
        mesh.faces.push([last, last, last]);
        mesh.faces.push([0, 0, 1]);
        let scene = Scene::new(&mesh, &mut Vec::new()).unwrap();
        let vis = rasterize_cpu(&scene, &front_camera(64));
        assert!(vis.triangle.iter().all(|&t| t == NO_TRIANGLE || t < 12));
    }

    /// A quad filling the view exactly shows its texture: pixel centres land on texel centres.
    #[test]
    fn textured_quad_reproduces_its_texture() {
        let res = 128u32;
        let dir = tempfile::tempdir().unwrap();
        let texture = image::RgbaImage::from_fn(res, res, |x, y| {
            let (u, v) = (x as f32 / res as f32, y as f32 / res as f32);
            let r = 0.5 + 0.5 * (6.0 * u).sin();
            let g = 0.5 + 0.5 * (4.0 * v + 1.0).cos();
            let b = 0.5 * (u + v);
            image::Rgba([r, g, b, 1.0].map(|c| (c * 255.0).round() as u8))
        });
        let path = dir.path().join("t.png");
        texture.save(&path).unwrap();
        // Plane x = 0 seen from +X at distance 2: half-size 2·tan(fov/2); +Y is right, +Z up.
        let half = (2.0 * (0.5 * SV3D_FOV_DEG.to_radians()).tan()) as f32;
        let mut quad = TriMesh::new(
            vec![
                [0.0, -half, -half],
                [0.0, half, -half],
                [0.0, half, half],
                [0.0, -half, half],
            ],
            vec![[0, 1, 2], [0, 2, 3]],
        );
        quad.uvs = Some(vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]);
        quad.materials = vec![Material {
            diffuse_texture: Some(path),
            ..Material::new("t")
        }];
        quad.face_materials = vec![0, 0];
        let scene = Scene::new(&quad, &mut Vec::new()).unwrap();
        let cam = front_camera(res);
        let ssaa = Camera {
            intrinsics: cam.intrinsics.scaled(2),
            ..cam
        };
        let vis = rasterize_cpu(&scene, &ssaa);
        let img = shade_rgba(&scene, &vis, &ssaa, 2, Background::Colour([1.0; 3]));
        let mse: f64 = img
            .pixels()
            .zip(texture.pixels())
            .flat_map(|(a, b)| (0..3).map(move |k| (f64::from(a[k]) - f64::from(b[k])).powi(2)))
            .sum::<f64>()
            / (3.0 * f64::from(res * res));
        let psnr = 10.0 * (255.0f64.powi(2) / mse.max(1e-12)).log10();
        eprintln!("textured quad: PSNR {psnr:.1} dB");
        assert!(psnr >= 40.0, "PSNR {psnr:.1} dB");
    }

    #[test]
    fn sizes_out_of_range_are_errors() {
        assert!(check_size(0, 10).is_err());
        assert!(check_size(10, MAX_SIDE + 1).is_err());
        assert!(check_size(576, 576).is_ok());
    }
}
