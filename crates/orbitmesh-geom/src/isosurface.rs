//! Iso-surfaces of scalar fields sampled on regular grids, by marching tetrahedra: every cube is
//! split into six tetrahedra around its main diagonal (Kuhn's triangulation, which neighbouring
//! cubes share face for face), so the surface is closed wherever the field is, with no ambiguous
//! cases and a 16-case table small enough to derive instead of store.

use std::collections::HashMap;

use crate::mesh::TriMesh;

/// Samples of a scalar field at `origin + (i, j, k)·spacing`, x fastest.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalarGrid {
    pub dims: [usize; 3],
    pub origin: [f32; 3],
    pub spacing: f32,
    pub values: Vec<f32>,
}

impl ScalarGrid {
    pub fn index(&self, i: usize, j: usize, k: usize) -> usize {
        (k * self.dims[1] + j) * self.dims[0] + i
    }

    pub fn point(&self, i: usize, j: usize, k: usize) -> [f32; 3] {
        let n = [i, j, k];
        [0, 1, 2].map(|a| self.origin[a] + n[a] as f32 * self.spacing)
    }

    /// A grid of `n` points per side spanning the cube [−half, half]³, filled by `f`.
    pub fn sample_cube(n: usize, half: f32, f: impl Fn([f32; 3]) -> f32 + Sync) -> Self {
        use rayon::prelude::*;
        let n = n.max(2);
        let spacing = 2.0 * half / (n - 1) as f32;
        let mut grid = ScalarGrid {
            dims: [n; 3],
            origin: [-half; 3],
            spacing,
            values: vec![0.0; n * n * n],
        };
        let g = grid.clone();
        grid.values
            .par_chunks_mut(n * n)
            .enumerate()
            .for_each(|(k, slab)| {
                for j in 0..n {
                    for i in 0..n {
                        slab[j * n + i] = f(g.point(i, j, k));
                    }
                }
            });
        grid
    }
}

/// The six tetrahedra of a cube, as corner indices (bit 0 = +x, bit 1 = +y, bit 2 = +z): each walks
/// from corner 0 to corner 7 along the axes in one of the six orders.
const KUHN: [[usize; 4]; 6] = [
    [0, 1, 3, 7],
    [0, 1, 5, 7],
    [0, 2, 3, 7],
    [0, 2, 6, 7],
    [0, 4, 5, 7],
    [0, 4, 6, 7],
];

/// The surface where the field crosses `iso`, oriented so normals point from values above `iso`
/// (inside) towards values below (outside). Crossing points are shared between neighbouring
/// tetrahedra, so the mesh is connected and closed where the field is.
pub fn marching_tetrahedra(grid: &ScalarGrid, iso: f32) -> TriMesh {
    let [nx, ny, nz] = grid.dims;
    let mut mesh = TriMesh::default();
    let mut crossings: HashMap<(usize, usize), u32> = HashMap::new();
    if nx < 2 || ny < 2 || nz < 2 {
        return mesh;
    }
    for k in 0..nz - 1 {
        for j in 0..ny - 1 {
            for i in 0..nx - 1 {
                let corner = |c: usize| grid.index(i + (c & 1), j + (c >> 1 & 1), k + (c >> 2 & 1));
                let ids: [usize; 8] = std::array::from_fn(corner);
                let inside = ids.map(|id| grid.values[id] > iso);
                if inside.iter().all(|&b| b) || inside.iter().all(|&b| !b) {
                    continue;
                }
                for tet in KUHN {
                    let v = tet.map(|c| ids[c]);
                    let ins: Vec<usize> = v
                        .iter()
                        .copied()
                        .filter(|&id| grid.values[id] > iso)
                        .collect();
                    let out: Vec<usize> = v
                        .iter()
                        .copied()
                        .filter(|&id| grid.values[id] <= iso)
                        .collect();
                    let mut cross = |a: usize, b: usize| -> u32 {
                        *crossings.entry((a.min(b), a.max(b))).or_insert_with(|| {
                            let (fa, fb) = (grid.values[a], grid.values[b]);
                            let t = ((iso - fa) / (fb - fa)).clamp(0.0, 1.0);
                            let pa = grid_point(grid, a);
                            let pb = grid_point(grid, b);
                            mesh.positions
                                .push([0, 1, 2].map(|c| pa[c] + t * (pb[c] - pa[c])));
                            mesh.positions.len() as u32 - 1
                        })
                    };
                    let polygon: Vec<u32> = match (ins.len(), out.len()) {
                        (1, 3) => out.iter().map(|&o| cross(ins[0], o)).collect(),
                        (3, 1) => ins.iter().map(|&n| cross(n, out[0])).collect(),
                        // A quad: walk its edges in a cycle (in0-out0, in0-out1, in1-out1, in1-out0).
                        (2, 2) => vec![
                            cross(ins[0], out[0]),
                            cross(ins[0], out[1]),
                            cross(ins[1], out[1]),
                            cross(ins[1], out[0]),
                        ],
                        _ => continue,
                    };
                    let centre = |ids: &[usize]| {
                        let mut c = [0.0f32; 3];
                        for &id in ids {
                            let p = grid_point(grid, id);
                            for a in 0..3 {
                                c[a] += p[a] / ids.len() as f32;
                            }
                        }
                        c
                    };
                    let outward: [f32; 3] = {
                        let (ci, co) = (centre(&ins), centre(&out));
                        [0, 1, 2].map(|a| co[a] - ci[a])
                    };
                    for t in 1..polygon.len() - 1 {
                        let mut tri = [polygon[0], polygon[t], polygon[t + 1]];
                        let [a, b, c] = tri.map(|v| mesh.positions[v as usize]);
                        let n = cross3(sub3(b, a), sub3(c, a));
                        if n[0] * outward[0] + n[1] * outward[1] + n[2] * outward[2] < 0.0 {
                            tri.swap(1, 2);
                        }
                        mesh.faces.push(tri);
                    }
                }
            }
        }
    }
    // Crossings on a grid point (t = 0 or 1) make zero-area faces: drop them.
    mesh.faces.retain(|f| {
        let [a, b, c] = f.map(|v| mesh.positions[v as usize]);
        let n = cross3(sub3(b, a), sub3(c, a));
        n.iter().any(|x| *x != 0.0)
    });
    mesh
}

fn grid_point(grid: &ScalarGrid, id: usize) -> [f32; 3] {
    let i = id % grid.dims[0];
    let j = id / grid.dims[0] % grid.dims[1];
    let k = id / (grid.dims[0] * grid.dims[1]);
    grid.point(i, j, k)
}

fn sub3(a: [f32; 3], b: [f32; 3]) -> [f32; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

fn cross3(a: [f32; 3], b: [f32; 3]) -> [f32; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::volume_iou;
    use crate::shapes;

    #[test]
    fn a_sphere_field_gives_a_closed_outward_sphere() {
        let grid = ScalarGrid::sample_cube(48, 0.6, |p| {
            0.4 - (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt()
        });
        let mesh = marching_tetrahedra(&grid, 0.0);
        mesh.validate(std::path::Path::new("sphere")).unwrap();
        // On the sphere, to within the linear interpolation's error.
        for p in &mesh.positions {
            let r = (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt();
            assert!((r - 0.4).abs() < 0.01, "r {r}");
        }
        let area = 4.0 * std::f64::consts::PI * 0.16;
        assert!(
            (mesh.area() - area).abs() / area < 0.03,
            "area {}",
            mesh.area()
        );
        // Closed: every edge is shared by exactly two faces.
        let mut edges: HashMap<(u32, u32), i32> = HashMap::new();
        for f in &mesh.faces {
            for e in 0..3 {
                let (a, b) = (f[e], f[(e + 1) % 3]);
                *edges.entry((a.min(b), a.max(b))).or_default() += 1;
            }
        }
        assert!(edges.values().all(|&n| n == 2));
        // Outward: the winding number says the centre is inside.
        let ball = shapes::uv_sphere(0.4, 32, 64);
        assert!(volume_iou(&mesh, &ball, 48) > 0.95);
    }
}
