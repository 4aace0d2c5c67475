//! From a trained field to files: its density on a regular grid and the iso-surface mesh, with
//! vertex colours from the field, in the object frame.

use burn::tensor::Device;
use orbitmesh_geom::TriMesh;
use orbitmesh_geom::isosurface::{ScalarGrid, keep_largest_solid, marching_cubes};

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

/// The outer surface of the largest solid where the density crosses `iso` (floaters and hollows
/// dropped), coloured by the field as seen from outside along each vertex normal.
pub fn field_mesh(
    field: &RadianceField,
    config: &FieldConfig,
    density: &ScalarGrid,
    silhouettes: Option<&ScalarGrid>,
    iso: f32,
    device: &Device,
) -> TriMesh {
    let mut solid = density.clone();
    solid.box_blur();
    // Exact silhouettes bound the object: the surface is the nearer of the field's and the
    // visual hull's (scaled so the hull's 0.5 meets the field's iso).
    if let Some(hull) = silhouettes {
        for (d, a) in solid.values.iter_mut().zip(&hull.values) {
            *d = d.min(2.0 * iso * a);
        }
    }
    keep_largest_solid(&mut solid, iso);
    let mut mesh = marching_cubes(&solid, iso);
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
