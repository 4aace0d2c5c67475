//! Iso-surfaces of scalar fields sampled on regular grids, by marching cubes with a case table
//! derived from the cube's faces (so it cannot hold a transcription error), closed wherever the
//! field is.

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

/// A cube's corners are numbered by bits (bit 0 = +x, bit 1 = +y, bit 2 = +z); its twelve edges
/// join corners that differ in one bit.
const CUBE_EDGES: [(usize, usize); 12] = [
    (0, 1),
    (2, 3),
    (4, 5),
    (6, 7),
    (0, 2),
    (1, 3),
    (4, 6),
    (5, 7),
    (0, 4),
    (1, 5),
    (2, 6),
    (3, 7),
];

fn corner_position(c: usize) -> [f32; 3] {
    [c & 1, c >> 1 & 1, c >> 2 & 1].map(|b| b as f32)
}

fn edge_between(a: usize, b: usize) -> usize {
    CUBE_EDGES
        .iter()
        .position(|&(p, q)| (p, q) == (a.min(b), a.max(b)))
        .expect("adjacent corners")
}

/// The marching-cubes case table, derived rather than transcribed: for each of the 256 inside
/// patterns, the surface's triangles as triples of cube edges, wound counter-clockwise seen from
/// outside (from the values below `iso`). On each face the crossing edges are paired so the inside
/// corners stay apart (the classic table's choice on ambiguous faces); a face looks the same from
/// both cubes that share it, so neighbouring cells agree and the surface has no cracks.
fn case_table() -> &'static [Vec<[usize; 3]>; 256] {
    static TABLE: std::sync::OnceLock<[Vec<[usize; 3]>; 256]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        // Each face's corners in cyclic order, counter-clockwise seen from outside the cube.
        let faces: Vec<[usize; 4]> = (0..3)
            .flat_map(|axis| [0, 1].map(move |side| (axis, side)))
            .map(|(axis, side)| {
                let (u, v) = ((axis + 1) % 3, (axis + 2) % 3);
                let base = side << axis;
                let ring = [0, 1 << u, (1 << u) | (1 << v), 1 << v].map(|c| c | base);
                // (u, v, axis) is right-handed, so this ring turns about +axis: reversed on the
                // low side, whose outside is −axis.
                if side == 1 {
                    ring
                } else {
                    [ring[3], ring[2], ring[1], ring[0]]
                }
            })
            .collect();
        std::array::from_fn(|case| {
            let inside = |c: usize| case >> c & 1 == 1;
            // next[e] = the edge the surface's boundary runs to from edge e.
            let mut next = [usize::MAX; 12];
            for ring in &faces {
                for k in 0..4 {
                    let (prev, here) = (ring[(k + 3) % 4], ring[k]);
                    if inside(here) && !inside(prev) {
                        // A run of inside corners starts here; it ends before the first outside one.
                        let mut m = k;
                        while inside(ring[(m + 1) % 4]) {
                            m = (m + 1) % 4;
                        }
                        let entry = edge_between(prev, here);
                        let exit = edge_between(ring[m], ring[(m + 1) % 4]);
                        next[entry] = exit;
                    }
                }
            }
            let mut triangles = Vec::new();
            let mut used = [false; 12];
            for start in 0..12 {
                if next[start] == usize::MAX || used[start] {
                    continue;
                }
                let mut cycle = Vec::new();
                let mut e = start;
                while !used[e] {
                    used[e] = true;
                    cycle.push(e);
                    e = next[e];
                }
                // Fan from a vertex none of whose diagonals lies in a cube face: such a diagonal
                // could be drawn by the neighbouring cube too, and the edge would then have four
                // faces.
                let n = cycle.len();
                let apex = (0..n)
                    .find(|&r| (2..n - 1).all(|t| !on_one_face(cycle[r], cycle[(r + t) % n])))
                    .unwrap_or(0);
                for t in 1..n - 1 {
                    triangles.push([
                        cycle[apex],
                        cycle[(apex + t) % n],
                        cycle[(apex + t + 1) % n],
                    ]);
                }
            }
            triangles
        })
    })
}

/// Whether two cube edges lie in one face (all their corners agree in some coordinate bit).
fn on_one_face(a: usize, b: usize) -> bool {
    let corners = [
        CUBE_EDGES[a].0,
        CUBE_EDGES[a].1,
        CUBE_EDGES[b].0,
        CUBE_EDGES[b].1,
    ];
    (0..3).any(|bit| {
        corners
            .iter()
            .all(|c| c >> bit & 1 == corners[0] >> bit & 1)
    })
}

/// Keeps the grid's largest solid (the 6-connected region above `iso` with the most samples) and
/// fills its hollows: other regions drop to 0, and samples the outside cannot reach without
/// crossing the solid rise to `2·iso`. A NeRF's density is unconstrained where no ray reaches (its
/// inside) and noisy where no frame disagrees (stray floaters); the surface a user wants is the
/// outer skin of the one object.
pub fn keep_largest_solid(grid: &mut ScalarGrid, iso: f32) {
    let [nx, ny, nz] = grid.dims;
    let n = nx * ny * nz;
    let neighbours = |id: usize| {
        let (i, j, k) = (id % nx, id / nx % ny, id / (nx * ny));
        let mut out = [usize::MAX; 6];
        if i > 0 {
            out[0] = id - 1;
        }
        if i + 1 < nx {
            out[1] = id + 1;
        }
        if j > 0 {
            out[2] = id - nx;
        }
        if j + 1 < ny {
            out[3] = id + nx;
        }
        if k > 0 {
            out[4] = id - nx * ny;
        }
        if k + 1 < nz {
            out[5] = id + nx * ny;
        }
        out
    };
    // Flood fills from `seeds` through samples `pass` allows; returns the visit mask and count.
    let flood = |seeds: &[usize], pass: &dyn Fn(usize) -> bool, seen: &mut Vec<bool>| {
        let mut stack: Vec<usize> = seeds
            .iter()
            .copied()
            .filter(|&s| pass(s) && !seen[s])
            .collect();
        for &s in &stack {
            seen[s] = true;
        }
        let mut count = stack.len();
        while let Some(id) = stack.pop() {
            for q in neighbours(id) {
                if q != usize::MAX && !seen[q] && pass(q) {
                    seen[q] = true;
                    count += 1;
                    stack.push(q);
                }
            }
        }
        count
    };
    let inside = |id: usize| grid.values[id] > iso;
    let mut labelled = vec![false; n];
    let (mut best, mut best_size) = (usize::MAX, 0);
    for id in 0..n {
        if inside(id) && !labelled[id] {
            let size = flood(&[id], &inside, &mut labelled);
            if size > best_size {
                (best, best_size) = (id, size);
            }
        }
    }
    if best == usize::MAX {
        return;
    }
    let mut solid = vec![false; n];
    flood(&[best], &inside, &mut solid);
    let boundary: Vec<usize> = (0..n)
        .filter(|&id| {
            let (i, j, k) = (id % nx, id / nx % ny, id / (nx * ny));
            i == 0 || j == 0 || k == 0 || i + 1 == nx || j + 1 == ny || k + 1 == nz
        })
        .collect();
    let mut outside = vec![false; n];
    flood(&boundary, &|id| !solid[id], &mut outside);
    for id in 0..n {
        if outside[id] {
            if grid.values[id] > iso {
                grid.values[id] = 0.0;
            }
        } else if !solid[id] {
            grid.values[id] = 2.0 * iso;
        }
    }
}

/// The surface where the field crosses `iso` by marching cubes, oriented so normals point from
/// values above `iso` (inside) towards values below (outside). Crossing points are shared between
/// neighbouring cubes, so the mesh is connected and closed where the field is.
pub fn marching_cubes(grid: &ScalarGrid, iso: f32) -> TriMesh {
    let [nx, ny, nz] = grid.dims;
    let mut mesh = TriMesh::default();
    if nx < 2 || ny < 2 || nz < 2 {
        return mesh;
    }
    let table = case_table();
    let mut crossings: HashMap<(usize, usize), u32> = HashMap::new();
    for k in 0..nz - 1 {
        for j in 0..ny - 1 {
            for i in 0..nx - 1 {
                let ids: [usize; 8] = std::array::from_fn(|c| {
                    grid.index(i + (c & 1), j + (c >> 1 & 1), k + (c >> 2 & 1))
                });
                let case = (0..8).fold(0, |acc, c| {
                    acc | (usize::from(grid.values[ids[c]] > iso) << c)
                });
                if case == 0 || case == 255 {
                    continue;
                }
                let mut vertex = |e: usize| -> u32 {
                    let (a, b) = CUBE_EDGES[e];
                    let (ga, gb) = (ids[a], ids[b]);
                    *crossings.entry((ga, gb)).or_insert_with(|| {
                        let (fa, fb) = (grid.values[ga], grid.values[gb]);
                        let t = ((iso - fa) / (fb - fa)).clamp(0.0, 1.0);
                        let (pa, pb) = (corner_position(a), corner_position(b));
                        let cell = grid.point(i, j, k);
                        mesh.positions.push(std::array::from_fn(|c| {
                            cell[c] + grid.spacing * (pa[c] + t * (pb[c] - pa[c]))
                        }));
                        mesh.positions.len() as u32 - 1
                    })
                };
                for triangle in &table[case] {
                    let face = triangle.map(&mut vertex);
                    mesh.faces.push(face);
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
        let mesh = marching_cubes(&grid, 0.0);
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
        assert!(edge_uses(&mesh).values().all(|&n| n == 2));
        // Outward: the winding number says the centre is inside.
        let ball = shapes::uv_sphere(0.4, 32, 64);
        assert!(volume_iou(&mesh, &ball, 48) > 0.95);
    }

    #[test]
    fn the_largest_solid_keeps_its_outer_skin_only() {
        // A shell of radius 0.3 (hollow inside 0.2) and a small ball floating beside it.
        let grid = ScalarGrid::sample_cube(48, 0.6, |p| {
            let r = (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt();
            let q = ((p[0] - 0.45).powi(2) + p[1] * p[1] + p[2] * p[2]).sqrt();
            if (0.2..0.3).contains(&r) || q < 0.08 {
                1.0
            } else {
                0.0
            }
        });
        let raw = marching_cubes(&grid, 0.5);
        let mut cleaned = grid.clone();
        keep_largest_solid(&mut cleaned, 0.5);
        let mesh = marching_cubes(&cleaned, 0.5);
        // Both the hollow's inner wall and the floater are gone: only the outer sphere is left.
        assert!(raw.area() > 1.3 * mesh.area());
        for p in &mesh.positions {
            let r = (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt();
            assert!((r - 0.3).abs() < 0.03, "vertex at radius {r}");
        }
        assert!(edge_uses(&mesh).values().all(|&n| n == 2));
    }

    fn edge_uses(mesh: &TriMesh) -> HashMap<(u32, u32), i32> {
        let mut edges: HashMap<(u32, u32), i32> = HashMap::new();
        for f in &mesh.faces {
            for e in 0..3 {
                let (a, b) = (f[e], f[(e + 1) % 3]);
                *edges.entry((a.min(b), a.max(b))).or_default() += 1;
            }
        }
        edges
    }

    #[test]
    fn a_noise_field_gives_a_closed_surface_with_outward_normals() {
        // Every one of the 256 cases, ambiguous faces included, turns up in a random field; a
        // wrong table entry leaves a crack or a flipped polygon.
        let n = 14;
        let mut state = 12345u64;
        let mut grid = ScalarGrid::sample_cube(n, 1.0, |_| 0.0);
        for k in 0..n {
            for j in 0..n {
                for i in 0..n {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let border = [i, j, k].iter().any(|&c| c == 0 || c == n - 1);
                    let id = grid.index(i, j, k);
                    grid.values[id] = if border {
                        -1.0
                    } else {
                        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                    };
                }
            }
        }
        let mesh = marching_cubes(&grid, 0.0);
        assert!(mesh.faces.len() > 1000);
        assert!(edge_uses(&mesh).values().all(|&n| n == 2));
        // Outward winding: the enclosed volume, by the divergence theorem, is positive.
        let volume: f64 = mesh
            .faces
            .iter()
            .map(|f| {
                let [a, b, c] = f.map(|v| mesh.positions[v as usize].map(f64::from));
                (a[0] * (b[1] * c[2] - b[2] * c[1]) - a[1] * (b[0] * c[2] - b[2] * c[0])
                    + a[2] * (b[0] * c[1] - b[1] * c[0]))
                    / 6.0
            })
            .sum();
        assert!(volume > 0.0, "volume {volume}");
    }
}
