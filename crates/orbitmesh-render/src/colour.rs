//! Vertex colours for a reconstructed mesh from the orbit's frames: each vertex takes the colour
//! of the frame that sees it most head-on, among the frames where it is not hidden.

use nalgebra::Vector3;
use orbitmesh_geom::TriMesh;

use crate::raster::{NO_TRIANGLE, rasterize_cpu};
use crate::{Orbit, RenderError, Scene};

/// Per-vertex linear colours (0..1) for `mesh` from the frames of `orbit`; vertices no frame sees
/// get mid grey.
pub fn colour_from_frames(mesh: &TriMesh, orbit: &Orbit) -> Result<Vec<[f32; 3]>, RenderError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orbit::rendered_orbit;
    use orbitmesh_geom::shapes;

    #[test]
    fn vertex_colours_come_from_the_frames() {
        let mut ball = shapes::uv_sphere(0.4, 24, 48);
        // Red where x > 0, blue elsewhere, painted through vertex colours.
        ball.colors = Some(
            ball.positions
                .iter()
                .map(|p| {
                    if p[0] > 0.0 {
                        [1.0, 0.0, 0.0]
                    } else {
                        [0.0, 0.0, 1.0]
                    }
                })
                .collect(),
        );
        let orbit = rendered_orbit(&ball, 21, 96);
        let colours = colour_from_frames(&ball, &orbit).unwrap();
        let (mut right, mut total) = (0, 0);
        for (p, c) in ball.positions.iter().zip(&colours) {
            if p[0].abs() > 0.1 {
                total += 1;
                let red = c[0] > 0.5 && c[2] < 0.5;
                right += usize::from(red == (p[0] > 0.0));
            }
        }
        assert!(right as f64 > 0.97 * total as f64, "{right} of {total}");
    }
}
