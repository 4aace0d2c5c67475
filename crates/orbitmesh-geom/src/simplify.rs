//! Decimation to a face budget, through meshoptimizer's quadric simplifier (the `meshopt` crate),
//! so meshes from dense grids become sizes game engines take.

use meshopt::{SimplifyOptions, VertexDataAdapter};

use crate::mesh::TriMesh;

impl TriMesh {
    /// A copy with at most `target_faces` faces (when the simplifier can get there at all),
    /// simplified per material so materials stay
    /// apart, dropping vertices no face uses. Per-vertex attributes follow their vertices.
    /// Returns the mesh unchanged when it is already within budget.
    pub fn simplified(&self, target_faces: usize) -> TriMesh {
        if self.faces.len() <= target_faces || self.faces.is_empty() {
            return self.clone();
        }
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

#[cfg(test)]
mod tests {
    use crate::sample::{Sampling, sample_surface};
    use crate::{chamfer_distance, shapes};

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
