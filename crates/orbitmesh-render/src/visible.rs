//! Visible-surface sampling (`--sampling visible`): points from depth renders of 16 views, so
//! surfaces no camera sees (the inside of a closed scan, hidden internal shells) do not count,
//! as SyncDreamer's evaluation does.

use nalgebra::Vector3;
use orbitmesh_geom::{SurfaceSamples, TriMesh};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::RenderError;
use crate::camera::{Camera, Intrinsics, SV3D_FOV_DEG};
use crate::raster::{NO_TRIANGLE, Rasterizer};
use crate::scene::Scene;

pub const VISIBLE_VIEWS: usize = 16;
const VIEW_RESOLUTION: u32 = 384;
/// Far enough that a sphere of radius √3/2 (any normalised object) fits the 33.8° view.
const VIEW_DISTANCE: f64 = 3.2;

/// The 16 cameras: a Fibonacci spiral over the sphere around the origin, so top and bottom are
/// seen as well as the sides.
pub fn visible_cameras() -> Vec<Camera> {
    let k = Intrinsics::from_fov(SV3D_FOV_DEG, VIEW_RESOLUTION, VIEW_RESOLUTION);
    let golden = std::f64::consts::PI * (3.0 - 5f64.sqrt());
    (0..VISIBLE_VIEWS)
        .map(|i| {
            let z = 1.0 - (2.0 * i as f64 + 1.0) / VISIBLE_VIEWS as f64;
            let r = (1.0 - z * z).sqrt();
            let phi = golden * i as f64;
            let eye = VIEW_DISTANCE * Vector3::new(r * phi.cos(), r * phi.sin(), z);
            Camera::look_at(eye, Vector3::zeros(), Vector3::z(), k)
        })
        .collect()
}

/// `count` points drawn (seeded, with replacement when there are fewer) from the surface points
/// seen at the pixel centres of the 16 views, with their face normals.
pub fn sample_visible(
    mesh: &TriMesh,
    count: usize,
    seed: u64,
    rasterizer: &Rasterizer,
) -> Result<SurfaceSamples, RenderError> {
    let scene = Scene::new(mesh, &mut Vec::new())?;
    let mut seen: Vec<(u32, [f32; 2])> = Vec::new();
    for vis in rasterizer.rasterize_all(&scene, &visible_cameras())? {
        seen.extend(
            vis.triangle
                .iter()
                .zip(&vis.bary)
                .filter(|(t, _)| **t != NO_TRIANGLE)
                .map(|(t, b)| (*t, *b)),
        );
    }
    if seen.is_empty() {
        return Ok(SurfaceSamples::default());
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut samples = SurfaceSamples::default();
    for _ in 0..count {
        let (f, b) = seen[rng.random_range(0..seen.len())];
        let [a, c, d] = mesh.faces[f as usize].map(|i| mesh.positions[i as usize]);
        let b0 = 1.0 - b[0] - b[1];
        samples
            .points
            .push([0, 1, 2].map(|k| b0 * a[k] + b[0] * c[k] + b[1] * d[k]));
        samples.normals.push(scene.normals[f as usize]);
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;
    use orbitmesh_geom::shapes;

    #[test]
    fn a_hidden_inner_shell_gets_no_points() {
        let outer = shapes::uv_sphere(0.45, 24, 48);
        let inner = shapes::uv_sphere(0.2, 12, 24);
        let mut both = outer.clone();
        let base = both.positions.len() as u32;
        both.positions.extend(&inner.positions);
        both.faces
            .extend(inner.faces.iter().map(|f| f.map(|i| i + base)));
        let s = sample_visible(&both, 5000, 3, &Rasterizer::Cpu).unwrap();
        assert_eq!(s.points.len(), 5000);
        let radius = |p: &[f32; 3]| (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt();
        assert!(
            s.points.iter().all(|p| radius(p) > 0.4),
            "a point on the hidden sphere"
        );
        // Every side of the outer sphere is seen.
        for axis in 0..3 {
            for sign in [-1.0f32, 1.0] {
                assert!(s.points.iter().any(|p| p[axis] * sign > 0.4));
            }
        }
        // The same seed gives the same points.
        assert_eq!(
            sample_visible(&both, 5000, 3, &Rasterizer::Cpu)
                .unwrap()
                .points,
            s.points
        );
    }
}
