//! Point-set and volume metrics of the `gso` protocol (DESIGN.md).

use rayon::prelude::*;
use serde::Serialize;

use crate::mesh::{Aabb, TriMesh};
use crate::nearest::{Nearest, PointIndex};
use crate::sample::SurfaceSamples;
use crate::winding::WindingNumber;

/// Precision (prediction points within τ of the ground truth), recall (the converse) and their
/// harmonic mean.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FScore {
    pub tau: f64,
    pub precision: f64,
    pub recall: f64,
    pub fscore: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PointMetrics {
    /// ½ (mean nearest distance pred → gt + mean gt → pred), Euclidean, not squared.
    pub chamfer: f64,
    /// mean squared pred → gt + mean squared gt → pred (PyTorch3D's `chamfer_distance`).
    pub chamfer_l2_squared: f64,
    pub fscores: Vec<FScore>,
    /// Mean |n_p · n_q| over nearest pairs, both directions averaged; 1 = normals agree.
    pub normal_consistency: f64,
}

/// The nearest-neighbour pairs both ways between two clouds, the shared work of every point metric.
pub struct Correspondences {
    pub pred_to_gt: Vec<Nearest>,
    pub gt_to_pred: Vec<Nearest>,
}

pub fn correspondences(pred: &[[f32; 3]], gt: &[[f32; 3]]) -> Correspondences {
    let (gt_index, pred_index) = rayon::join(|| PointIndex::new(gt), || PointIndex::new(pred));
    let (pred_to_gt, gt_to_pred) =
        rayon::join(|| gt_index.nearest_all(pred), || pred_index.nearest_all(gt));
    Correspondences {
        pred_to_gt,
        gt_to_pred,
    }
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { f64::NAN } else { sum / n as f64 }
}

fn within(pairs: &[Nearest], tau: f64) -> f64 {
    mean(
        pairs
            .iter()
            .map(|n| f64::from(u8::from(f64::from(n.distance) < tau))),
    )
}

pub fn fscore(c: &Correspondences, tau: f64) -> FScore {
    let precision = within(&c.pred_to_gt, tau);
    let recall = within(&c.gt_to_pred, tau);
    let fscore = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    FScore {
        tau,
        precision,
        recall,
        fscore,
    }
}

/// Unsquared Chamfer distance between two point clouds (the `gso` protocol's definition).
pub fn chamfer_distance(a: &[[f32; 3]], b: &[[f32; 3]]) -> f64 {
    chamfer_from(&correspondences(a, b))
}

fn chamfer_from(c: &Correspondences) -> f64 {
    let d = |v: &[Nearest]| mean(v.iter().map(|n| f64::from(n.distance)));
    0.5 * (d(&c.pred_to_gt) + d(&c.gt_to_pred))
}

pub fn point_metrics_from(
    c: &Correspondences,
    pred: &SurfaceSamples,
    gt: &SurfaceSamples,
    taus: &[f64],
) -> PointMetrics {
    let sq = |v: &[Nearest]| mean(v.iter().map(|n| f64::from(n.distance).powi(2)));
    let agreement = |from: &[[f32; 3]], to: &[[f32; 3]], pairs: &[Nearest]| {
        mean(from.iter().zip(pairs).map(|(a, n)| {
            let b = to[n.index as usize];
            f64::from((a[0] * b[0] + a[1] * b[1] + a[2] * b[2]).abs())
        }))
    };
    PointMetrics {
        chamfer: chamfer_from(c),
        chamfer_l2_squared: sq(&c.pred_to_gt) + sq(&c.gt_to_pred),
        fscores: taus.iter().map(|&t| fscore(c, t)).collect(),
        normal_consistency: 0.5
            * (agreement(&pred.normals, &gt.normals, &c.pred_to_gt)
                + agreement(&gt.normals, &pred.normals, &c.gt_to_pred)),
    }
}

/// The voxel grid of the `gso` protocol: `cells` cubic cells along the longest side of `bounds`,
/// as many as fit along the others (at least one), centred on the box.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VoxelGrid {
    pub origin: [f64; 3],
    pub cell: f64,
    pub dims: [usize; 3],
}

impl VoxelGrid {
    pub fn covering(bounds: &Aabb, cells: usize) -> Self {
        let cells = cells.max(1);
        let longest = bounds.longest_side();
        let cell = if longest > 0.0 {
            longest / cells as f64
        } else {
            1.0
        };
        let extent = bounds.extent();
        let dims = extent.map(|e| ((e / cell - 1e-9).ceil() as usize).clamp(1, cells));
        let centre = bounds.centre();
        let origin = [0, 1, 2].map(|k| centre[k] - 0.5 * dims[k] as f64 * cell);
        VoxelGrid { origin, cell, dims }
    }

    pub fn centre(&self, i: usize, j: usize, k: usize) -> [f64; 3] {
        let idx = [i, j, k];
        [0, 1, 2].map(|a| self.origin[a] + (idx[a] as f64 + 0.5) * self.cell)
    }
}

/// Inside test on the grid: the winding number's magnitude exceeds ½ (either orientation). Cells outside the mesh's bounding box
/// are outside without evaluation (no surface subtends more than a hemisphere from there).
pub fn voxelize(mesh: &TriMesh, grid: &VoxelGrid) -> Vec<bool> {
    let w = WindingNumber::new(mesh);
    let [nx, ny, nz] = grid.dims;
    let mut inside = vec![false; nx * ny * nz];
    inside
        .par_chunks_mut(nx * ny)
        .enumerate()
        .for_each(|(k, slab)| {
            for j in 0..ny {
                for i in 0..nx {
                    let q = grid.centre(i, j, k);
                    slab[j * nx + i] = w.encloses(q);
                }
            }
        });
    inside
}

/// Volume IoU of two meshes on the `gso` grid (`cells` along the longest side of the union of
/// their bounding boxes). 0 when neither encloses any cell centre.
pub fn volume_iou(pred: &TriMesh, gt: &TriMesh, cells: usize) -> f64 {
    let grid = VoxelGrid::covering(&pred.bounds().union(&gt.bounds()), cells);
    let (a, b) = rayon::join(|| voxelize(pred, &grid), || voxelize(gt, &grid));
    let (mut inter, mut union) = (0usize, 0usize);
    for (x, y) in a.iter().zip(&b) {
        inter += usize::from(*x && *y);
        union += usize::from(*x || *y);
    }
    if union == 0 {
        0.0
    } else {
        inter as f64 / union as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{Sampling, sample_surface};
    use crate::shapes;

    fn point_metrics(pred: &SurfaceSamples, gt: &SurfaceSamples, taus: &[f64]) -> PointMetrics {
        point_metrics_from(&correspondences(&pred.points, &gt.points), pred, gt, taus)
    }

    #[test]
    fn concentric_spheres_are_their_radius_difference_apart() {
        let outer = sample_surface(
            &shapes::uv_sphere(0.5, 96, 192),
            100_000,
            0,
            Sampling::Independent,
        );
        let inner = sample_surface(
            &shapes::uv_sphere(0.45, 96, 192),
            100_000,
            1,
            Sampling::Independent,
        );
        let m = point_metrics(&outer, &inner, &[0.01, 0.06]);
        assert!(
            (m.chamfer - 0.05).abs() / 0.05 < 0.02,
            "chamfer {}",
            m.chamfer
        );
        assert!((m.chamfer_l2_squared - 2.0 * 0.05f64.powi(2)).abs() < 2e-4);
        assert_eq!(m.fscores[0].fscore, 0.0);
        assert_eq!(m.fscores[1].fscore, 1.0);
        assert!(m.normal_consistency > 0.99);
    }

    #[test]
    fn identical_meshes_are_close_and_fully_matched() {
        let mesh = shapes::uv_sphere(0.5, 64, 128);
        // Independent draws leave, by chance, a few of 100k points without a neighbour within
        // 0.01 (expected exp(-πτ²N/area) ≈ 4.5e-5 of them here); stratified ones leave none.
        for (mode, fscore) in [(Sampling::Independent, 0.9999), (Sampling::Stratified, 1.0)] {
            let a = sample_surface(&mesh, 100_000, 0, mode);
            let b = sample_surface(&mesh, 100_000, 1, mode);
            let m = point_metrics(&a, &b, &[0.01]);
            assert!(m.chamfer < 0.004, "{mode:?}: chamfer {}", m.chamfer);
            assert!(
                m.fscores[0].fscore >= fscore,
                "{mode:?}: {:?}",
                m.fscores[0]
            );
        }
    }

    #[test]
    fn cube_shifted_by_half_its_side_has_iou_one_third() {
        let a = shapes::cuboid([0.0; 3], [1.0; 3]);
        let b = shapes::cuboid([0.5, 0.0, 0.0], [1.5, 1.0, 1.0]);
        let iou = volume_iou(&a, &b, 64);
        assert!((iou - 1.0 / 3.0).abs() < 0.02, "iou {iou}");
        assert!((volume_iou(&a, &a, 64) - 1.0).abs() < 1e-12);
    }

    fn wound_inward(mut mesh: TriMesh) -> TriMesh {
        for f in &mut mesh.faces {
            f.swap(1, 2);
        }
        mesh
    }

    #[test]
    fn a_cube_wound_inward_has_iou_one_with_itself_and_its_outward_twin() {
        let cube = shapes::cuboid([0.0; 3], [1.0; 3]);
        let inward = wound_inward(cube.clone());
        assert_eq!(volume_iou(&inward, &inward, 32), 1.0);
        assert_eq!(volume_iou(&inward, &cube, 32), 1.0);
    }

    #[test]
    fn a_scan_wound_inward_has_the_iou_of_the_scan() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../data/gso-mini/stanford_bunny_npm");
        let scan = crate::read_mesh(&dir).unwrap().mesh;
        let inward = wound_inward(scan.clone());
        assert_eq!(volume_iou(&inward, &inward, 32), 1.0);
        assert_eq!(volume_iou(&inward, &scan, 32), 1.0);
        // Components that disagree: a cube wound outward beside the scan wound inward encloses
        // what the two wound outward do.
        let beside = |scan: &TriMesh| {
            let cube = shapes::cuboid([2.0; 3], [3.0; 3]);
            let offset = cube.positions.len() as u32;
            let positions = cube
                .positions
                .iter()
                .chain(&scan.positions)
                .copied()
                .collect();
            let faces = cube.faces.iter().copied();
            let faces = faces.chain(scan.faces.iter().map(|f| f.map(|i| i + offset)));
            TriMesh::new(positions, faces.collect())
        };
        assert_eq!(volume_iou(&beside(&inward), &beside(&scan), 48), 1.0);
    }

    #[test]
    fn open_hemisphere_gives_a_finite_iou() {
        let open = shapes::open_hemisphere(0.5, 32, 64);
        let ball = shapes::uv_sphere(0.5, 32, 64);
        let iou = volume_iou(&open, &ball, 32);
        assert!(iou.is_finite() && (0.0..=1.0).contains(&iou), "iou {iou}");
    }

    #[test]
    fn grid_has_cells_along_the_longest_side() {
        let b = Aabb {
            min: [0.0; 3],
            max: [2.0, 1.0, 0.5],
        };
        let g = VoxelGrid::covering(&b, 64);
        assert_eq!(g.dims, [64, 32, 16]);
        assert!((g.cell - 2.0 / 64.0).abs() < 1e-12);
    }
}
