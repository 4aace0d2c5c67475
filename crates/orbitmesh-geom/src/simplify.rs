//! Decimation to a face budget, through meshoptimizer's quadric simplifier (the `meshopt` crate),
//! so meshes from dense grids become sizes game engines take.

use meshopt::{SimplifyOptions, VertexDataAdapter};

use crate::mesh::{TriMesh, welded_ids};

impl TriMesh {
    /// A copy with at most `target_faces` faces (when the simplifier can get there at all),
    /// simplified per material so materials stay apart, dropping vertices no face uses.
    /// Per-vertex attributes follow their vertices; UV seams stay closed (the simplifier moves the
    /// split vertices of a seam together). Returns the mesh unchanged when it is already within
    /// budget.
    ///
    /// At small budgets the simplifier can fold thin parts onto each other (an edge of three
    /// faces) or open a crack: a result with more such edges than the input is simplified again
    /// to a tenth fewer faces, up to five times, and the one with the fewest kept.
    pub fn simplified(&self, target_faces: usize) -> TriMesh {
        if self.faces.len() <= target_faces || self.faces.is_empty() {
            return self.clone();
        }
        let input = self.open_and_non_manifold_edges();
        let mut best: Option<((usize, usize), TriMesh)> = None;
        let mut target = target_faces;
        for _ in 0..6 {
            let light = self.simplified_once(target);
            let defects = light.open_and_non_manifold_edges();
            let added = (
                defects.0.saturating_sub(input.0),
                defects.1.saturating_sub(input.1),
            );
            if added == (0, 0) {
                return light;
            }
            if best
                .as_ref()
                .is_none_or(|(fewest, _)| added.0 + added.1 < fewest.0 + fewest.1)
            {
                best = Some((added, light));
            }
            target = target * 9 / 10;
        }
        best.map(|(_, light)| light).unwrap_or_else(|| self.clone())
    }

    /// The edges with the vertices welded by position (a UV seam splits vertices, not the
    /// surface): how many border one face (holes, cracks) and how many more than two.
    pub fn open_and_non_manifold_edges(&self) -> (usize, usize) {
        let welded = welded_ids(&self.positions);
        let mut edges: std::collections::HashMap<(usize, usize), usize> = Default::default();
        for f in &self.faces {
            for k in 0..3 {
                let (a, b) = (welded[f[k] as usize], welded[f[(k + 1) % 3] as usize]);
                if a != b {
                    *edges.entry((a.min(b), a.max(b))).or_default() += 1;
                }
            }
        }
        let open = edges.values().filter(|&&n| n == 1).count();
        let non_manifold = edges.values().filter(|&&n| n > 2).count();
        (open, non_manifold)
    }

    /// One pass of the simplifier to at most `target_faces` faces.
    fn simplified_once(&self, target_faces: usize) -> TriMesh {
        let bytes: Vec<u8> = self
            .positions
            .iter()
            .flatten()
            .flat_map(|c| c.to_le_bytes())
            .collect();
        let Ok(adapter) = VertexDataAdapter::new(&bytes, 12, 0) else {
            return self.clone();
        };
        let groups: Vec<u32> = if self.face_materials.is_empty() {
            vec![0]
        } else {
            let mut g = self.face_materials.clone();
            g.sort_unstable();
            g.dedup();
            g
        };
        let mut faces = Vec::new();
        let mut face_materials = Vec::new();
        for group in groups {
            let indices: Vec<u32> = self
                .faces
                .iter()
                .enumerate()
                .filter(|(f, _)| self.face_materials.get(*f).is_none_or(|&m| m == group))
                .flat_map(|(_, face)| *face)
                .collect();
            // Each group keeps its share of the budget.
            let share = target_faces * indices.len() / (3 * self.faces.len());
            // First within an error bound of 5% of the mesh's extent; if that cannot reach the
            // budget, without a bound: the budget is a cap.
            let target = share.max(1) * 3;
            let mut kept = meshopt::simplify(
                &indices,
                &adapter,
                target,
                0.05,
                SimplifyOptions::None,
                None,
            );
            if kept.len() > target {
                kept = meshopt::simplify(
                    &indices,
                    &adapter,
                    target,
                    f32::MAX,
                    SimplifyOptions::None,
                    None,
                );
            }
            for tri in kept.chunks_exact(3) {
                faces.push([tri[0], tri[1], tri[2]]);
                if !self.face_materials.is_empty() {
                    face_materials.push(group);
                }
            }
        }
        remove_folds(&self.positions, &mut faces, &mut face_materials);
        // Compact: only the vertices the kept faces use, in first-use order.
        let mut remap = vec![u32::MAX; self.positions.len()];
        let mut order = Vec::new();
        for f in &mut faces {
            for v in f.iter_mut() {
                if remap[*v as usize] == u32::MAX {
                    remap[*v as usize] = order.len() as u32;
                    order.push(*v as usize);
                }
                *v = remap[*v as usize];
            }
        }
        TriMesh {
            positions: order.iter().map(|&i| self.positions[i]).collect(),
            faces,
            uvs: self
                .uvs
                .as_ref()
                .map(|u| order.iter().map(|&i| u[i]).collect()),
            colors: self
                .colors
                .as_ref()
                .map(|c| order.iter().map(|&i| c[i]).collect()),
            materials: self.materials.clone(),
            face_materials,
        }
    }
}

/// Removes the simplifier's folds: faces over the same three points (vertices welded by
/// position) as another. Back to back (opposite windings) a pair encloses nothing and both go; the
/// same way round, one stays.
fn remove_folds(positions: &[[f32; 3]], faces: &mut Vec<[u32; 3]>, materials: &mut Vec<u32>) {
    let welded = welded_ids(positions);
    // Each face by its sorted welded corners, with its winding: whether sorting kept the cycle.
    let mut by_corners: std::collections::HashMap<[usize; 3], (Vec<usize>, Vec<usize>)> =
        Default::default();
    for (i, f) in faces.iter().enumerate() {
        let w = f.map(|v| welded[v as usize]);
        let mut sorted = w;
        sorted.sort_unstable();
        let rotations = [w, [w[1], w[2], w[0]], [w[2], w[0], w[1]]];
        let entry = by_corners.entry(sorted).or_default();
        if rotations.contains(&sorted) {
            entry.0.push(i);
        } else {
            entry.1.push(i);
        }
    }
    let mut dropped = vec![false; faces.len()];
    for (forward, backward) in by_corners.values() {
        if forward.len() + backward.len() < 2 {
            continue;
        }
        let pairs = forward.len().min(backward.len());
        let left = if forward.len() > pairs {
            &forward[pairs..]
        } else {
            &backward[pairs..]
        };
        for &i in forward[..pairs].iter().chain(&backward[..pairs]) {
            dropped[i] = true;
        }
        for &i in left.iter().skip(1) {
            dropped[i] = true;
        }
    }
    let mut kept = dropped.iter().map(|d| !d);
    faces.retain(|_| kept.next().unwrap_or(true));
    if !materials.is_empty() {
        let mut kept = dropped.iter().map(|d| !d);
        materials.retain(|_| kept.next().unwrap_or(true));
    }
}

#[cfg(test)]
mod tests {
    use crate::sample::{Sampling, sample_surface};
    use crate::{chamfer_distance, read_mesh, shapes};

    #[test]
    fn small_budgets_add_no_hole_and_no_fold_to_the_scans() {
        for name in ["GSO_bead_bowl", "stanford_bunny_npm", "utah_teapot"] {
            let path = format!(
                "{}/../../data/gso-mini/{name}/meshes/model.obj",
                env!("CARGO_MANIFEST_DIR")
            );
            let scan = read_mesh(std::path::Path::new(&path)).unwrap().mesh;
            let before = scan.open_and_non_manifold_edges();
            // The bowl (textured, so with UV seams) and the bunny are closed and manifold; the
            // teapot has open edges of its own.
            if name != "utah_teapot" {
                assert_eq!(before, (0, 0), "{name} is closed and manifold");
            }
            for budget in [2_000, 5_000] {
                let light = scan.simplified(budget);
                let faces = light.faces.len();
                assert!(faces <= budget, "{name}: {faces} faces for {budget}");
                assert!(
                    faces * 10 >= budget.min(scan.faces.len()) * 6,
                    "{name}: {faces}"
                );
                // Welded by position, a crack along one of the texture's seams would be open
                // edges.
                let after = light.open_and_non_manifold_edges();
                assert!(
                    after.0 <= before.0 && after.1 <= before.1,
                    "{name} at {budget} faces: {before:?} open and non-manifold edges became {after:?}"
                );
            }
        }
    }

    #[test]
    fn a_dense_sphere_keeps_its_shape_at_a_tenth_of_the_faces() {
        let mut dense = shapes::uv_sphere(0.5, 96, 192);
        dense.colors = Some(
            dense
                .positions
                .iter()
                .map(|p| [p[0] + 0.5, 0.0, 0.0])
                .collect(),
        );
        let target = dense.faces.len() / 10;
        let light = dense.simplified(target);
        assert!(
            light.faces.len() <= target && light.faces.len() > target / 2,
            "{}",
            light.faces.len()
        );
        light.validate(std::path::Path::new("light")).unwrap();
        // Colours followed their vertices.
        let colors = light.colors.as_ref().unwrap();
        for (p, c) in light.positions.iter().zip(colors) {
            assert!((c[0] - (p[0] + 0.5)).abs() < 1e-6);
        }
        let a = sample_surface(&dense, 20_000, 0, Sampling::Independent);
        let b = sample_surface(&light, 20_000, 1, Sampling::Independent);
        let same = sample_surface(&dense, 20_000, 1, Sampling::Independent);
        let baseline = chamfer_distance(&a.points, &same.points);
        let chamfer = chamfer_distance(&a.points, &b.points);
        assert!(chamfer < baseline + 0.002, "{chamfer} vs {baseline}");
    }
}
