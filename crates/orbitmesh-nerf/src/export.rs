//! From a trained field to files: its density on a regular grid and the iso-surface mesh, with
//! vertex colours from the field, in the object frame.

use burn::tensor::Device;
use orbitmesh_geom::{ScalarGrid, TriMesh, keep_largest_solid, marching_cubes};
use orbitmesh_render::Projection;

use crate::field::{FieldConfig, RadianceField};
use crate::occupancy::OccupancyGrid;
use crate::train::{query_density, query_radiance};

/// The field's density at `resolution`³ points spanning the object frame's [−0.5, 0.5]³. Points
/// in cells the occupancy grid (dilated by one cell) marks empty are not queried: they read 0.
pub fn density_grid(
    field: &RadianceField,
    config: &FieldConfig,
    occupancy: &OccupancyGrid,
    resolution: usize,
    device: &Device,
) -> ScalarGrid {
    let n = resolution.max(2);
    let spacing = 1.0 / (n - 1) as f32;
    let mut grid = ScalarGrid {
        dims: [n; 3],
        origin: [-0.5; 3],
        spacing,
        values: vec![0.0; n * n * n],
    };
    let r = occupancy.resolution as i64;
    let near_occupied = |p: [f32; 3]| {
        let c = p.map(|v| ((v + 0.5) * r as f32).floor() as i64);
        (-1..=1).any(|dz| {
            (-1..=1).any(|dy| {
                (-1..=1).any(|dx| {
                    let q = [c[0] + dx, c[1] + dy, c[2] + dz];
                    q.iter().all(|v| (0..r).contains(v))
                        && occupancy.is_occupied(q.map(|v| (v as f32 + 0.5) / r as f32))
                })
            })
        })
    };
    let mut indices = Vec::new();
    let mut points = Vec::new();
    for k in 0..n {
        for j in 0..n {
            for i in 0..n {
                let p = grid.point(i, j, k);
                if near_occupied(p) {
                    indices.push(grid.index(i, j, k));
                    points.extend(p.map(|v| v + 0.5));
                }
            }
        }
    }
    for (i, d) in indices
        .into_iter()
        .zip(query_density(field, config, &points, device))
    {
        grid.values[i] = d;
    }
    grid
}

/// One training view of the field: its projection and where its rays meet the surface
/// ([`render_depth`]).
///
/// [`render_depth`]: crate::train::render_depth
pub struct DepthView {
    pub projection: Projection,
    pub depth: Vec<f32>,
}

impl DepthView {
    /// How far behind the surface this view sees at `p`'s pixel `p` lies: negative in front of
    /// it (empty space), −∞ where the view sees nothing, +∞ where it cannot tell (outside the
    /// frame, behind the camera, or at the edge of what it sees).
    fn behind_surface(&self, p: [f32; 3]) -> f32 {
        let Some(([x, y], distance)) = self.projection.project(p) else {
            return f32::INFINITY;
        };
        let (w, h) = (self.projection.width, self.projection.height);
        if !(x >= 0.0 && y >= 0.0 && x <= (w - 1) as f32 && y <= (h - 1) as f32) {
            return f32::INFINITY;
        }
        let (x0, y0) = (x.floor() as usize, y.floor() as usize);
        let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
        let corners = [(x0, y0), (x1, y0), (x0, y1), (x1, y1)].map(|(x, y)| self.depth[y * w + x]);
        match corners.iter().filter(|d| d.is_finite()).count() {
            0 => f32::NEG_INFINITY,
            // The nearest of the four: interpolating depth across a curved rim overshoots it
            // (depth is convex there) and would carve the rim away.
            4 => distance - corners.into_iter().fold(f32::INFINITY, f32::min),
            _ => f32::INFINITY,
        }
    }
}

/// Occupancy (1 solid, 0 empty, the surface at 0.5) on an `n`³ lattice over [−0.5, 0.5]³, carved
/// by what the views see: a point is empty where a view sees a surface behind it, or nothing at
/// all. Silhouettes cannot see concavities; depth can. Each point is decided by the view that
/// carves it second deepest, so one view's stray depth does not dent the surface.
pub fn depth_carving(views: &[DepthView], n: usize) -> ScalarGrid {
    let n = n.max(2);
    let band = 1.0 / (n - 1) as f32;
    ScalarGrid::sample_cube(n, 0.5, |p| {
        let (mut least, mut second) = (f32::INFINITY, f32::INFINITY);
        for v in views {
            let s = v.behind_surface(p);
            if s < least {
                second = least;
                least = s;
            } else if s < second {
                second = s;
            }
        }
        let behind = if views.len() > 1 { second } else { least };
        // A ramp one lattice step wide puts the surface between lattice points.
        (0.5 + behind / (2.0 * band)).clamp(0.0, 1.0)
    })
}

/// The outer surface of the largest solid of `occupancy` (its 0.5 level; floaters and hollows
/// dropped), coloured by the field as seen from outside along each vertex normal.
pub fn field_mesh(
    field: &RadianceField,
    config: &FieldConfig,
    mut occupancy: ScalarGrid,
    device: &Device,
) -> TriMesh {
    keep_largest_solid(&mut occupancy, 0.5);
    let mut mesh = marching_cubes(&occupancy, 0.5);
    if mesh.faces.is_empty() {
        return mesh;
    }
    let normals = mesh.vertex_normals();
    let points: Vec<f32> = mesh
        .positions
        .iter()
        .flat_map(|p| p.map(|v| v + 0.5))
        .collect();
    let dirs: Vec<f32> = normals
        .iter()
        .flat_map(|n| {
            let len = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt();
            if len > 0.0 {
                n.map(|v| -v / len)
            } else {
                [0.0, 0.0, -1.0]
            }
        })
        .collect();
    let (_, rgb) = query_radiance(field, config, &points, &dirs, device);
    mesh.colors = Some(rgb.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect());
    mesh
}

#[cfg(test)]
mod tests {
    use super::*;
    use orbitmesh_render::camera::{Intrinsics, SV3D_FOV_DEG, even_azimuths, orbit};

    /// A cube of side 0.6 with a blind pocket 0.2 deep and 0.2 wide in its +x face: no
    /// silhouette ever shows the pocket.
    fn solid(p: [f64; 3]) -> bool {
        let cube = p.iter().all(|v| v.abs() <= 0.3);
        let pocket = p[0] >= 0.1 && p[1].abs() < 0.1 && p[2].abs() < 0.1;
        cube && !pocket
    }

    /// Exact surface depths of `solid` (a ray turns opaque where it enters the solid), found by
    /// stepping and bisecting.
    fn depth_view(camera: &orbitmesh_render::Camera) -> DepthView {
        let k = camera.intrinsics;
        let mut depth = Vec::new();
        for y in 0..k.height {
            for x in 0..k.width {
                let (o, d) = camera.ray(f64::from(x) + 0.5, f64::from(y) + 0.5);
                let at = |t: f64| {
                    let q = o + d * t;
                    [q.x, q.y, q.z]
                };
                let hit = (0..1000)
                    .map(|i| 1.0 + 0.002 * f64::from(i))
                    .find(|&t| solid(at(t)));
                depth.push(hit.map_or(f32::NAN, |mut hi| {
                    let mut lo = hi - 0.002;
                    for _ in 0..20 {
                        let mid = 0.5 * (lo + hi);
                        if solid(at(mid)) {
                            hi = mid;
                        } else {
                            lo = mid;
                        }
                    }
                    hi as f32
                }));
            }
        }
        DepthView {
            projection: Projection::new(camera),
            depth,
        }
    }

    #[test]
    fn depth_carving_finds_a_pocket_no_silhouette_shows() {
        let k = Intrinsics::from_fov(SV3D_FOV_DEG, 64, 64);
        let views: Vec<DepthView> = orbit(&even_azimuths(24), 10.0, 2.0)
            .iter()
            .map(|v| depth_view(&v.camera(k)))
            .collect();
        let grid = depth_carving(&views, 49);
        let at = |p: [f32; 3]| {
            let c = p.map(|v| ((v + 0.5) * 48.0).round() as usize);
            grid.values[grid.index(c[0], c[1], c[2])]
        };
        // The pocket and the space in front of it are empty; the cube around it is solid.
        for p in [
            [0.2, 0.0, 0.0],
            [0.14, 0.0, 0.0],
            [0.4, 0.0, 0.0],
            [0.0, 0.0, 0.45],
        ] {
            assert!(at(p) < 0.5, "{p:?}: {}", at(p));
        }
        for p in [
            [0.0; 3],
            [0.2, 0.2, 0.0],
            [0.06, 0.0, 0.0],
            [-0.25, 0.0, 0.25],
        ] {
            assert!(at(p) > 0.5, "{p:?}: {}", at(p));
        }
        // Above the bottom face (which views from 10° up never see, so nothing carves below it)
        // the carved volume is the solid's, on the same lattice.
        let cell = grid.spacing.powi(3);
        let (mut carved, mut exact) = (0.0, 0.0);
        for k in 0..49 {
            for j in 0..49 {
                for i in 0..49 {
                    let p = grid.point(i, j, k);
                    if p[2] > -0.25 {
                        carved += grid.values[grid.index(i, j, k)] * cell;
                        exact += f32::from(u8::from(solid(p.map(f64::from)))) * cell;
                    }
                }
            }
        }
        assert!(
            (carved - exact).abs() < 0.005,
            "volume {carved}, exactly {exact}"
        );
    }
}
