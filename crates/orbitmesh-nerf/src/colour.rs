//! Vertex colours for a reconstructed mesh from the orbit's frames: each vertex takes the colour
//! of the frame that sees it most head-on, among the frames where it is not hidden.

use nalgebra::Vector3;
use orbitmesh_geom::TriMesh;
use orbitmesh_render::Scene;
use orbitmesh_render::raster::{NO_TRIANGLE, rasterize_cpu};

use crate::{NerfError, Orbit};

/// Per-vertex linear colours (0..1) for `mesh` from the frames of `orbit`; vertices no frame sees
/// get mid grey.
pub fn colour_from_frames(mesh: &TriMesh, orbit: &Orbit) -> Result<Vec<[f32; 3]>, NerfError> {
    let scene = Scene::new(mesh, &mut Vec::new())?;
    let normals: Vec<Vector3<f64>> = mesh
        .vertex_normals()
        .iter()
        .map(|n| Vector3::new(n[0].into(), n[1].into(), n[2].into()))
        .collect();
    let mut best = vec![(f64::NEG_INFINITY, [0.5f32; 3]); mesh.positions.len()];
    for frame in &orbit.frames {
        let cam = &frame.camera;
        let vis = rasterize_cpu(&scene, cam);
        let eye = cam.position();
        let (w, h) = (vis.width as i64, vis.height as i64);
        for (v, p) in mesh.positions.iter().enumerate() {
            let p = Vector3::new(p[0].into(), p[1].into(), p[2].into());
            // A vertex without a normal (only degenerate faces) has no side to be seen from.
            if normals[v] == Vector3::zeros() {
                continue;
            }
            let facing = normals[v].dot(&(eye - p).normalize());
            if facing.partial_cmp(&best[v].0) != Some(std::cmp::Ordering::Greater) {
                continue;
            }
            let (x, y, depth) = cam.project(p);
            let (px, py) = (x.floor() as i64, y.floor() as i64);
            if px < 0 || py < 0 || px >= w || py >= h {
                continue;
            }
            let i = (py * w + px) as usize;
            // Visible when the nearest surface at its pixel is (about) the vertex itself.
            if vis.triangle[i] == NO_TRIANGLE || f64::from(vis.depth[i]) < depth - 0.01 {
                continue;
            }
            let c = frame.image.get_pixel(px as u32, py as u32);
            if c[3] < 128 {
                continue;
            }
            best[v] = (facing, [0, 1, 2].map(|k| f32::from(c[k]) / 255.0));
        }
    }
    Ok(best.into_iter().map(|(_, c)| c).collect())
}
