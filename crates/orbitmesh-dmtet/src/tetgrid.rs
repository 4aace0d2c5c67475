//! The tetrahedral grid and the discrete half of marching tetrahedra.
//!
//! The grid is the Kuhn (Freudenthal) subdivision of a cubic lattice: every cube is cut into six
//! tetrahedra along its main diagonal, one per ordering of the axes, and because every cube is cut
//! the same way the tetrahedra of neighbouring cubes meet face to face. The grid is therefore
//! implicit: a vertex is a lattice point, a tetrahedron is (cube, axis ordering), and every edge
//! joins a lattice point to one of its seven neighbours in the positive directions
//! (x, y, z, xy, xz, yz, xyz). Nothing is stored per tetrahedron, so there is nothing to generate
//! or cache, at any resolution.
//!
//! Which edges the surface crosses and how the crossing points join into triangles depends only on
//! the signs of the SDF, so it is computed here on plain numbers; where on each edge the point
//! lies is the differentiable half ([`crate::surface`]).

use rayon::prelude::*;

/// Marks an edge the surface does not cross.
const NONE: u32 = u32::MAX;

/// The six axis orderings: tetrahedron `p` of a cube walks from corner 0 along `ORDERS[p][0]`,
/// then `ORDERS[p][1]`, then `ORDERS[p][2]` to corner 7.
const ORDERS: [[usize; 3]; 6] = [
    [0, 1, 2],
    [0, 2, 1],
    [1, 0, 2],
    [1, 2, 0],
    [2, 0, 1],
    [2, 1, 0],
];

/// A lattice of `res`³ cubes over [−half, half]³, subdivided into tetrahedra.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TetGrid {
    pub res: usize,
    pub half: f32,
}

/// The surface's connectivity for one sign pattern: which grid edges it crosses and the
/// triangles over those crossing points, oriented outwards (SDF < 0 is inside).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Topology {
    /// The crossed edges as pairs of grid vertices (the lower lattice point first): surface vertex
    /// `i` lies on the edge `edges[i]`.
    pub edges: Vec<[u32; 2]>,
    pub faces: Vec<[u32; 3]>,
}

impl TetGrid {
    pub fn new(res: usize, half: f32) -> Self {
        assert!(res >= 1, "a tetrahedral grid needs at least one cube");
        TetGrid { res, half }
    }

    /// Lattice points per side.
    pub fn side(&self) -> usize {
        self.res + 1
    }

    pub fn vertex_count(&self) -> usize {
        self.side().pow(3)
    }

    pub fn tet_count(&self) -> usize {
        6 * self.res.pow(3)
    }

    pub fn spacing(&self) -> f32 {
        2.0 * self.half / self.res as f32
    }

    pub fn index(&self, i: usize, j: usize, k: usize) -> usize {
        (k * self.side() + j) * self.side() + i
    }

    fn coords(&self, v: usize) -> [usize; 3] {
        let s = self.side();
        [v % s, (v / s) % s, v / (s * s)]
    }

    /// The lattice point `v` in the object frame.
    pub fn position(&self, v: usize) -> [f32; 3] {
        self.coords(v)
            .map(|c| -self.half + self.spacing() * c as f32)
    }

    pub fn positions(&self) -> Vec<[f32; 3]> {
        (0..self.vertex_count())
            .into_par_iter()
            .map(|v| self.position(v))
            .collect()
    }

    /// Whether `v` lies on the lattice's outer faces (kept outside so the surface stays closed).
    pub fn on_boundary(&self, v: usize) -> bool {
        self.coords(v).iter().any(|&c| c == 0 || c == self.res)
    }

    /// The vertex at `v` + `bits` (bit 0 = +x, 1 = +y, 2 = +z), if inside the lattice.
    fn step(&self, v: usize, bits: usize) -> Option<usize> {
        let mut c = self.coords(v);
        for (axis, c) in c.iter_mut().enumerate() {
            *c += (bits >> axis) & 1;
            if *c > self.res {
                return None;
            }
        }
        Some(self.index(c[0], c[1], c[2]))
    }

    /// The four vertices of tetrahedron `p` of the cube whose lowest corner is `corner`, as
    /// corner bit sets along the walk (each a superset of the one before) and as grid indices.
    fn tet(&self, corner: usize, p: usize) -> ([usize; 4], [usize; 4]) {
        let o = ORDERS[p];
        let bits = [0, 1 << o[0], (1 << o[0]) | (1 << o[1]), 7];
        let s = self.side();
        let v = bits.map(|b| corner + (b & 1) + ((b >> 1) & 1) * s + ((b >> 2) & 1) * s * s);
        (bits, v)
    }

    /// Marching tetrahedra on the signs of `sdf` (one value per lattice point; < 0 is inside).
    /// The result is closed and 2-manifold whenever the boundary vertices are outside.
    pub fn topology(&self, sdf: &[f32]) -> Topology {
        assert_eq!(
            sdf.len(),
            self.vertex_count(),
            "one SDF value per lattice point"
        );
        let inside = |v: usize| sdf[v] < 0.0;
        // Crossed edges, in slot order (vertex·7 + direction − 1) so the numbering is deterministic.
        let edges: Vec<(usize, [u32; 2])> = (0..self.vertex_count())
            .into_par_iter()
            .flat_map_iter(|v| {
                (1..8usize).filter_map(move |bits| {
                    let w = self.step(v, bits)?;
                    (inside(v) != inside(w)).then_some((v * 7 + bits - 1, [v as u32, w as u32]))
                })
            })
            .collect();
        let mut slot_vertex = vec![NONE; self.vertex_count() * 7];
        for (i, (slot, _)) in edges.iter().enumerate() {
            slot_vertex[*slot] = i as u32;
        }
        let positions = |v: usize| self.position(v);
        let s = self.side();
        let cubes = self.res.pow(3);
        let faces: Vec<[u32; 3]> = (0..cubes)
            .into_par_iter()
            .flat_map_iter(|c| {
                let (i, j, k) = (
                    c % self.res,
                    (c / self.res) % self.res,
                    c / (self.res * self.res),
                );
                let corner = (k * s + j) * s + i;
                let mut out = Vec::new();
                for p in 0..6 {
                    let (bits, v) = self.tet(corner, p);
                    let code = (0..4)
                        .filter(|&a| inside(v[a]))
                        .fold(0, |m, a| m | (1 << a));
                    if code == 0 || code == 15 {
                        continue;
                    }
                    // The surface vertex on the tetrahedron's edge a–b (a earlier on the walk, so
                    // its corner bits are a subset of b's).
                    let on = |a: usize, b: usize| {
                        let (a, b) = (a.min(b), a.max(b));
                        slot_vertex[v[a] * 7 + (bits[b] ^ bits[a]) - 1]
                    };
                    let ins: Vec<usize> = (0..4).filter(|&a| code & (1 << a) != 0).collect();
                    let outs: Vec<usize> = (0..4).filter(|&a| code & (1 << a) == 0).collect();
                    let tris: Vec<[(usize, usize); 3]> = match (ins.as_slice(), outs.as_slice()) {
                        ([a], [b, c, d]) | ([b, c, d], [a]) => vec![[(*a, *b), (*a, *c), (*a, *d)]],
                        ([a, b], [c, d]) => vec![
                            [(*a, *c), (*a, *d), (*b, *d)],
                            [(*a, *c), (*b, *d), (*b, *c)],
                        ],
                        _ => unreachable!("a mixed sign pattern has one to three inside"),
                    };
                    // Orientation from the lattice (midpoints of the crossed edges): the normal
                    // points from the inside vertices to the outside ones.
                    let centre = |set: &[usize]| {
                        let mut m = [0.0f32; 3];
                        for &a in set {
                            let p = positions(v[a]);
                            (0..3).for_each(|x| m[x] += p[x] / set.len() as f32);
                        }
                        m
                    };
                    let (ci, co) = (centre(&ins), centre(&outs));
                    let outward = [0, 1, 2].map(|x| co[x] - ci[x]);
                    for t in tris {
                        let mid = t.map(|(a, b)| {
                            let (pa, pb) = (positions(v[a]), positions(v[b]));
                            [0, 1, 2].map(|x| 0.5 * (pa[x] + pb[x]))
                        });
                        let e1 = [0, 1, 2].map(|x| mid[1][x] - mid[0][x]);
                        let e2 = [0, 1, 2].map(|x| mid[2][x] - mid[0][x]);
                        let n = [
                            e1[1] * e2[2] - e1[2] * e2[1],
                            e1[2] * e2[0] - e1[0] * e2[2],
                            e1[0] * e2[1] - e1[1] * e2[0],
                        ];
                        let f = t.map(|(a, b)| on(a, b));
                        let dot: f32 = (0..3).map(|x| n[x] * outward[x]).sum();
                        out.push(if dot >= 0.0 { f } else { [f[0], f[2], f[1]] });
                    }
                }
                out
            })
            .collect();
        Topology {
            edges: edges.into_iter().map(|(_, e)| e).collect(),
            faces,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    fn sphere_sdf(grid: &TetGrid, centre: [f32; 3], r: f32) -> Vec<f32> {
        grid.positions()
            .iter()
            .map(|p| {
                let d: f32 = (0..3).map(|x| (p[x] - centre[x]).powi(2)).sum();
                d.sqrt() - r
            })
            .collect()
    }

    /// Every undirected edge in exactly two faces, once in each direction: closed, 2-manifold
    /// (at edges) and consistently oriented.
    pub(crate) fn assert_closed_oriented(faces: &[[u32; 3]]) {
        let mut directed: HashMap<(u32, u32), usize> = HashMap::new();
        for f in faces {
            for k in 0..3 {
                *directed.entry((f[k], f[(k + 1) % 3])).or_default() += 1;
            }
        }
        for (&(a, b), &n) in &directed {
            assert_eq!(n, 1, "directed edge {a}->{b} used {n} times");
            assert_eq!(directed.get(&(b, a)), Some(&1), "edge {a}-{b} is open");
        }
    }

    #[test]
    fn the_grid_fills_the_cube_with_tetrahedra_of_the_right_volume() {
        let grid = TetGrid::new(3, 0.5);
        let mut volume = 0.0f64;
        for c in 0..27 {
            let (i, j, k) = (c % 3, (c / 3) % 3, c / 9);
            for p in 0..6 {
                let (_, v) = grid.tet(grid.index(i, j, k), p);
                let q = v.map(|v| grid.position(v).map(f64::from));
                let d = |a: usize| [0, 1, 2].map(|x| q[a][x] - q[0][x]);
                let (a, b, c) = (d(1), d(2), d(3));
                let det = a[0] * (b[1] * c[2] - b[2] * c[1]) - a[1] * (b[0] * c[2] - b[2] * c[0])
                    + a[2] * (b[0] * c[1] - b[1] * c[0]);
                assert!(det.abs() > 1e-9, "degenerate tetrahedron");
                volume += det.abs() / 6.0;
            }
        }
        assert!((volume - 1.0).abs() < 1e-9, "{volume}");
    }

    #[test]
    fn a_sphere_gives_a_closed_oriented_surface_with_euler_characteristic_two() {
        let grid = TetGrid::new(16, 0.6);
        let sdf = sphere_sdf(&grid, [0.03, -0.02, 0.01], 0.37);
        let topo = grid.topology(&sdf);
        assert!(topo.faces.len() > 500, "{} faces", topo.faces.len());
        assert_closed_oriented(&topo.faces);
        let edges = topo.faces.len() * 3 / 2;
        let chi = topo.edges.len() as i64 - edges as i64 + topo.faces.len() as i64;
        assert_eq!(chi, 2);
        // Every crossing vertex is used, and the normals point away from the centre.
        let mut used = vec![false; topo.edges.len()];
        topo.faces
            .iter()
            .flatten()
            .for_each(|&v| used[v as usize] = true);
        assert!(used.iter().all(|&u| u));
        let mid = |e: [u32; 2]| {
            let (a, b) = (grid.position(e[0] as usize), grid.position(e[1] as usize));
            [0, 1, 2].map(|x| 0.5 * (a[x] + b[x]))
        };
        let mut outward = 0;
        for f in &topo.faces {
            let p = f.map(|v| mid(topo.edges[v as usize]));
            let e1 = [0, 1, 2].map(|x| p[1][x] - p[0][x]);
            let e2 = [0, 1, 2].map(|x| p[2][x] - p[0][x]);
            let n = [
                e1[1] * e2[2] - e1[2] * e2[1],
                e1[2] * e2[0] - e1[0] * e2[2],
                e1[0] * e2[1] - e1[1] * e2[0],
            ];
            if (0..3).map(|x| n[x] * p[0][x]).sum::<f32>() > 0.0 {
                outward += 1;
            }
        }
        assert_eq!(outward, topo.faces.len());
    }

    #[test]
    fn two_spheres_are_two_components_and_all_outside_is_empty() {
        let grid = TetGrid::new(12, 0.6);
        let a = sphere_sdf(&grid, [-0.25, 0.0, 0.0], 0.2);
        let b = sphere_sdf(&grid, [0.25, 0.0, 0.0], 0.2);
        let sdf: Vec<f32> = a.iter().zip(&b).map(|(a, b)| a.min(*b)).collect();
        let topo = grid.topology(&sdf);
        assert_closed_oriented(&topo.faces);
        let chi =
            topo.edges.len() as i64 - (topo.faces.len() * 3 / 2) as i64 + topo.faces.len() as i64;
        assert_eq!(chi, 4);
        let empty = grid.topology(&vec![1.0; grid.vertex_count()]);
        assert!(empty.faces.is_empty() && empty.edges.is_empty());
    }
}
