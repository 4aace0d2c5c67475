//! The differentiable half of marching tetrahedra: where each surface vertex lies on its crossed
//! edge, as burn ops, so gradients reach the SDF values and the deformations.

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::tetgrid::{TetGrid, Topology};

/// In the meshes written out, crossing points closer than this fraction of an edge to a lattice
/// point are held there, so no surface vertex coincides with another and no face degenerates.
/// Not while optimising: a held point's SDF values get no gradient, and could never change sign.
pub const EDGE_MARGIN: f32 = 0.02;

pub(crate) fn index(values: impl IntoIterator<Item = u32>, device: &Device) -> Tensor<1, Int> {
    let v: Vec<i64> = values.into_iter().map(i64::from).collect();
    let n = v.len();
    Tensor::from_data(TensorData::new(v, [n]), device)
}

pub(crate) fn tensor2(values: Vec<f32>, cols: usize, device: &Device) -> Tensor<2> {
    let rows = values.len() / cols;
    Tensor::from_data(TensorData::new(values, [rows, cols]), device)
}

pub(crate) fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("an f32 tensor")
}

/// The surface vertices of `topology` and the interpolation weight of each along its edge.
pub struct SurfacePoints {
    /// [E, 3] positions in the object frame.
    pub positions: Tensor<2>,
    /// [E, 1] fraction of the way from `edges[i][0]` to `edges[i][1]`.
    pub t: Tensor<2>,
    a: Tensor<1, Int>,
    b: Tensor<1, Int>,
}

impl SurfacePoints {
    /// Surface vertices from the SDF ([V]) and raw deformations ([V, 3]; each lattice point moves
    /// by at most `bound` along each axis, through tanh, as in DMTet); crossing points are kept
    /// `margin` (a fraction of the edge) away from its ends.
    pub fn new(
        topology: &Topology,
        lattice: Tensor<2>,
        sdf: Tensor<1>,
        deform: Tensor<2>,
        bound: f32,
        margin: f32,
    ) -> Self {
        let device = sdf.device();
        let a = index(topology.edges.iter().map(|e| e[0]), &device);
        let b = index(topology.edges.iter().map(|e| e[1]), &device);
        let n = topology.edges.len();
        let moved = |v: &Tensor<1, Int>| {
            lattice.clone().select(0, v.clone())
                + deform.clone().select(0, v.clone()).tanh() * bound
        };
        let (pa, pb) = (moved(&a), moved(&b));
        let sa = sdf.clone().select(0, a.clone()).reshape([n, 1]);
        let sb = sdf.select(0, b.clone()).reshape([n, 1]);
        let mut t = sa.clone() / (sa - sb);
        if margin > 0.0 {
            t = t.clamp(margin, 1.0 - margin);
        }
        SurfacePoints {
            positions: pa.clone() + (pb - pa) * t.clone(),
            t,
            a,
            b,
        }
    }

    /// A per-lattice-point attribute ([V, C]) carried to the surface vertices by the same weights.
    pub fn interpolate(&self, values: Tensor<2>) -> Tensor<2> {
        let va = values.clone().select(0, self.a.clone());
        let vb = values.select(0, self.b.clone());
        va.clone() + (vb - va) * self.t.clone()
    }
}

/// The lattice points as a [V, 3] tensor.
pub fn lattice(grid: &TetGrid, device: &Device) -> Tensor<2> {
    tensor2(grid.positions().into_flattened(), 3, device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vertices_follow_the_sdf_as_finite_differences_say() {
        let device = Device::flex().autodiff();
        let grid = TetGrid::new(6, 0.6);
        let positions = grid.positions();
        // A lumpy sphere, so the weights differ from edge to edge.
        let sdf: Vec<f32> = positions
            .iter()
            .map(|p| {
                let r = (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt();
                r - 0.33 - 0.05 * (3.0 * p[0]).sin() * (2.0 * p[1]).cos()
            })
            .collect();
        let deform: Vec<f32> = (0..positions.len() * 3)
            .map(|i| ((i * 7919) % 13) as f32 / 13.0 - 0.5)
            .collect();
        let topo = grid.topology(&sdf);
        let bound = grid.spacing();
        let weights: Vec<f32> = (0..topo.edges.len() * 3)
            .map(|i| ((i * 104729) % 17) as f32 / 17.0 - 0.4)
            .collect();
        let lat = lattice(&grid, &device);
        let w = tensor2(weights.clone(), 3, &device);
        let objective = |sdf: &[f32], deform: &[f32]| -> f64 {
            let plain = Device::flex();
            let p = SurfacePoints::new(
                &topo,
                lattice(&grid, &plain),
                Tensor::from_data(TensorData::new(sdf.to_vec(), [sdf.len()]), &plain),
                tensor2(deform.to_vec(), 3, &plain),
                bound,
                0.0,
            );
            to_vec(p.positions)
                .iter()
                .zip(&weights)
                .map(|(a, b)| f64::from(a * b))
                .sum()
        };
        let s = Tensor::<1>::from_data(TensorData::new(sdf.clone(), [sdf.len()]), &device)
            .require_grad();
        let d = tensor2(deform.clone(), 3, &device).require_grad();
        let p = SurfacePoints::new(&topo, lat, s.clone(), d.clone(), bound, 0.0);
        let grads = (p.positions * w).sum().backward();
        let gs = to_vec(s.grad(&grads).unwrap());
        let gd = to_vec(d.grad(&grads).unwrap());
        // Check the lattice points of a few crossed edges.
        let h = 1e-3f32;
        let mut checked = 0;
        for e in topo.edges.iter().step_by(topo.edges.len() / 7) {
            let v = e[0] as usize;
            let mut plus = sdf.clone();
            let mut minus = sdf.clone();
            plus[v] += h;
            minus[v] -= h;
            let fd =
                (objective(&plus, &deform) - objective(&minus, &deform)) / (2.0 * f64::from(h));
            assert!(
                (fd - f64::from(gs[v])).abs() < 2e-3 * (1.0 + fd.abs()),
                "sdf[{v}]: autodiff {} vs finite differences {fd}",
                gs[v]
            );
            for x in 0..3 {
                let mut plus = deform.clone();
                let mut minus = deform.clone();
                plus[3 * v + x] += h;
                minus[3 * v + x] -= h;
                let fd = (objective(&sdf, &plus) - objective(&sdf, &minus)) / (2.0 * f64::from(h));
                let g = f64::from(gd[3 * v + x]);
                assert!(
                    (fd - g).abs() < 2e-3 * (1.0 + fd.abs()),
                    "deform: {g} vs {fd}"
                );
            }
            checked += 1;
        }
        assert!(checked >= 5);
        assert!(gs.iter().any(|g| g.abs() > 1e-3), "the SDF gets gradients");
    }

    #[test]
    fn vertices_lie_where_the_sdf_interpolates_to_zero() {
        let device = Device::flex();
        let grid = TetGrid::new(8, 0.6);
        let sdf: Vec<f32> = grid.positions().iter().map(|p| p[0] - 0.11).collect();
        let topo = grid.topology(&sdf);
        let n = sdf.len();
        let p = SurfacePoints::new(
            &topo,
            lattice(&grid, &device),
            Tensor::from_data(TensorData::new(sdf, [n]), &device),
            Tensor::zeros([n, 3], &device),
            grid.spacing(),
            EDGE_MARGIN,
        );
        for q in to_vec(p.positions).chunks(3) {
            assert!((q[0] - 0.11).abs() < 1e-5, "{q:?}");
        }
    }
}
