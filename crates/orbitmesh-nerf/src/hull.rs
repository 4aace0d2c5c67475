//! The visual hull: the largest shape whose silhouettes fit inside every frame's alpha.

use orbitmesh_geom::{ScalarGrid, TriMesh, marching_cubes};
use orbitmesh_render::{Orbit, OrbitImage, Projection};

use crate::NerfError;

#[derive(Debug, Clone, Copy)]
pub struct HullOptions {
    /// Grid points per side.
    pub resolution: usize,
    /// The grid spans [−extent, extent]³ in the object frame (normalised objects fit in ±0.5).
    pub extent: f32,
}

impl Default for HullOptions {
    fn default() -> Self {
        HullOptions {
            resolution: 192,
            extent: 0.55,
        }
    }
}

/// One frame ready for lookups: its projection and its alpha as 0..1.
struct Silhouette {
    projection: Projection,
    alpha: Vec<f32>,
}

impl Silhouette {
    fn new(frame: &OrbitImage) -> Self {
        Silhouette {
            projection: Projection::new(&frame.camera),
            alpha: frame
                .image
                .pixels()
                .map(|p| f32::from(p[3]) / 255.0)
                .collect(),
        }
    }

    /// Bilinear alpha where `p` projects; 0 outside the image or behind the camera.
    fn alpha_at(&self, p: [f32; 3]) -> f32 {
        let Some(([x, y], _)) = self.projection.project(p) else {
            return 0.0;
        };
        let (w, h) = (self.projection.width, self.projection.height);
        if !(x >= 0.0 && y >= 0.0 && x <= (w - 1) as f32 && y <= (h - 1) as f32) {
            return 0.0;
        }
        let (x0, y0) = (x.floor() as usize, y.floor() as usize);
        let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
        let (fx, fy) = (x - x0 as f32, y - y0 as f32);
        let a = |x: usize, y: usize| self.alpha[y * w + x];
        let top = a(x0, y0) * (1.0 - fx) + a(x1, y0) * fx;
        let bottom = a(x0, y1) * (1.0 - fx) + a(x1, y1) * fx;
        top * (1.0 - fy) + bottom * fy
    }
}

/// Carves the grid: each point keeps the smallest alpha any frame shows where it projects, and
/// the hull is that field's 0.5 iso-surface. Needs frames with alpha.
pub fn visual_hull(orbit: &Orbit, opts: &HullOptions) -> Result<(ScalarGrid, TriMesh), NerfError> {
    if let Some(f) = orbit.frames.iter().find(|f| !f.has_alpha) {
        return Err(NerfError::Invalid {
            path: f.path.clone(),
            message: "the frame has no alpha channel: the visual hull needs silhouettes".into(),
        });
    }
    let all: Vec<usize> = (0..orbit.frames.len()).collect();
    let grid = silhouette_grid(orbit, &all, opts.resolution, opts.extent);
    let mesh = marching_cubes(&grid, 0.5);
    if mesh.faces.is_empty() {
        return Err(NerfError::Invalid {
            path: orbit.dir.clone(),
            message: "the silhouettes carve everything away (do the cameras look at the object?)"
                .into(),
        });
    }
    Ok((grid, mesh))
}

/// The least alpha over the silhouettes of `frames` at each point of an `n`³ lattice over
/// [−half, half]³: 1 inside every silhouette, 0 outside one, the visual hull at 0.5.
pub fn silhouette_grid(orbit: &Orbit, frames: &[usize], n: usize, half: f32) -> ScalarGrid {
    let views: Vec<Silhouette> = frames
        .iter()
        .map(|&i| Silhouette::new(&orbit.frames[i]))
        .collect();
    ScalarGrid::sample_cube(n, half, |p| {
        let mut occupancy = 1.0f32;
        for v in &views {
            occupancy = occupancy.min(v.alpha_at(p));
            if occupancy <= 0.0 {
                break;
            }
        }
        occupancy
    })
}

/// The cells of a `resolution`³ grid over the unit cube (the object frame + 0.5, x fastest) that
/// the silhouettes of `frames` do not carve away, dilated by one cell so no surface is lost to
/// pixel rounding. None when a frame has no alpha (nothing can be carved).
pub fn carved_cells(orbit: &Orbit, frames: &[usize], resolution: usize) -> Option<Vec<bool>> {
    use rayon::prelude::*;
    if frames.iter().any(|i| !orbit.frames[*i].has_alpha) {
        return None;
    }
    let views: Vec<Silhouette> = frames
        .iter()
        .map(|i| Silhouette::new(&orbit.frames[*i]))
        .collect();
    let r = resolution;
    let inside = |p: [f32; 3]| views.iter().all(|v| v.alpha_at(p) > 0.0);
    // A cell survives when its centre or any corner projects inside every silhouette.
    let kept: Vec<bool> = (0..r * r * r)
        .into_par_iter()
        .map(|c| {
            let (i, j, k) = (c % r, c / r % r, c / (r * r));
            let at = |u: f32, v: f32, w: f32| {
                [i as f32 + u, j as f32 + v, k as f32 + w].map(|x| x / r as f32 - 0.5)
            };
            inside(at(0.5, 0.5, 0.5))
                || (0..8).any(|b| {
                    inside(at(
                        (b & 1) as f32,
                        ((b >> 1) & 1) as f32,
                        ((b >> 2) & 1) as f32,
                    ))
                })
        })
        .collect();
    let mut dilated = kept.clone();
    for c in 0..r * r * r {
        if kept[c] {
            continue;
        }
        let (i, j, k) = ((c % r) as i64, (c / r % r) as i64, (c / (r * r)) as i64);
        let ri = r as i64;
        dilated[c] = (-1..=1).any(|dz| {
            (-1..=1).any(|dy| {
                (-1..=1).any(|dx| {
                    let q = [i + dx, j + dy, k + dz];
                    q.iter().all(|v| (0..ri).contains(v))
                        && kept[((q[2] * ri + q[1]) * ri + q[0]) as usize]
                })
            })
        });
    }
    Some(dilated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use orbitmesh_geom::{Sampling, chamfer_distance, sample_surface, shapes};
    use orbitmesh_render::rendered_orbit;

    #[test]
    fn the_hull_of_a_convex_shape_is_the_shape() {
        let ball = shapes::uv_sphere(0.4, 32, 64);
        let opts = HullOptions {
            resolution: 64,
            ..Default::default()
        };
        let (_, hull) = visual_hull(&rendered_orbit(&ball, 21, 96), &opts).unwrap();
        let a = sample_surface(&hull, 20_000, 0, Sampling::Independent);
        let b = sample_surface(&ball, 20_000, 1, Sampling::Independent);
        let chamfer = chamfer_distance(&a.points, &b.points);
        assert!(chamfer < 0.012, "chamfer {chamfer}");
        // Only silhouettes: the top and bottom poles, seen at 10° from the side, are not carved
        // as deeply as the sides, so the hull encloses the ball.
        assert!(hull.bounds().longest_side() >= ball.bounds().longest_side() - 0.02);
    }

    #[test]
    fn frames_without_alpha_are_refused() {
        let mut o = rendered_orbit(&shapes::cuboid([-0.2; 3], [0.2; 3]), 21, 32);
        o.frames[4].has_alpha = false;
        let e = visual_hull(&o, &HullOptions::default()).err().unwrap();
        assert!(e.to_string().contains("no alpha"), "{e}");
    }
}
