//! The object frame of DESIGN.md: right-handed, Z up, bounding box centred at the origin with its
//! longest side 1.

use nalgebra::{Point3, Similarity3, UnitQuaternion, Vector3};

use crate::mesh::{Aabb, TriMesh};

/// Which axis a mesh file treats as up. GSO scans are Z up; many other meshes are Y up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpAxis {
    #[default]
    Z,
    Y,
}

impl UpAxis {
    /// The rotation into the Z-up object frame: +90° about X for a Y-up mesh (y → z, z → −y).
    pub fn to_z_up(self) -> Similarity3<f64> {
        match self {
            UpAxis::Z => Similarity3::identity(),
            UpAxis::Y => Similarity3::from_parts(
                Default::default(),
                UnitQuaternion::from_axis_angle(&Vector3::x_axis(), std::f64::consts::FRAC_PI_2),
                1.0,
            ),
        }
    }
}

/// Where an exported object's origin is, as game engines place objects by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pivot {
    /// The centre of its bounding box.
    Centre,
    /// The centre of its base: the object stands on the ground plane (z = 0) over the origin.
    Base,
}

/// The transform that centres `bounds` at the origin and scales its longest side to 1. A
/// degenerate box (a point) is only centred.
pub fn normalising_transform(bounds: &Aabb) -> Similarity3<f64> {
    let longest = bounds.longest_side();
    let scale = if longest > 0.0 && longest.is_finite() {
        1.0 / longest
    } else {
        1.0
    };
    let c = bounds.centre();
    let centre = nalgebra::Vector3::new(c[0], c[1], c[2]);
    Similarity3::from_parts((-scale * centre).into(), UnitQuaternion::identity(), scale)
}

pub fn transform_point(t: &Similarity3<f64>, p: [f32; 3]) -> [f32; 3] {
    let q = t.transform_point(&Point3::new(p[0].into(), p[1].into(), p[2].into()));
    [q.x as f32, q.y as f32, q.z as f32]
}

impl TriMesh {
    /// Applies a similarity to the positions. A reflection-free similarity keeps the winding, so
    /// faces are unchanged.
    pub fn transform(&mut self, t: &Similarity3<f64>) {
        for p in &mut self.positions {
            *p = transform_point(t, *p);
        }
    }

    /// Scales about the origin so the bounding box's longest side measures `size` (a mesh with
    /// no extent is left as it is).
    pub fn scale_longest_side_to(&mut self, size: f64) {
        let longest = self.bounds().longest_side();
        if longest > 0.0 {
            self.transform(&Similarity3::from_scaling(size / longest));
        }
    }

    /// Moves the mesh (Z up) so that `pivot` is at the origin.
    pub fn move_pivot_to_origin(&mut self, pivot: Pivot) {
        let b = self.bounds();
        let c = b.centre();
        let z = match pivot {
            Pivot::Centre => c[2],
            Pivot::Base => b.min[2],
        };
        self.transform(&Similarity3::from_parts(
            Vector3::new(-c[0], -c[1], -z).into(),
            UnitQuaternion::identity(),
            1.0,
        ));
    }

    /// Places the mesh for an engine: scaled so its longest side is `size`, then with `pivot` at
    /// the origin, each where given.
    pub fn place(&mut self, size: Option<f64>, pivot: Option<Pivot>) {
        if let Some(size) = size {
            self.scale_longest_side_to(size);
        }
        if let Some(pivot) = pivot {
            self.move_pivot_to_origin(pivot);
        }
    }

    /// Turns the mesh into the object frame (Z up, centred, longest side 1) and returns the
    /// transform applied, so a caller can map results back.
    pub fn normalise(&mut self, up: UpAxis) -> Similarity3<f64> {
        let rotate = up.to_z_up();
        self.transform(&rotate);
        let fit = normalising_transform(&self.bounds());
        self.transform(&fit);
        fit * rotate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pivot_at_the_base_stands_the_object_on_the_origin() {
        let mut mesh = crate::shapes::cuboid([1.0, 2.0, 3.0], [3.0, 6.0, 4.0]);
        let mut centred = mesh.clone();
        mesh.move_pivot_to_origin(Pivot::Base);
        let b = mesh.bounds();
        assert_eq!((b.min, b.max), ([-1.0, -2.0, 0.0], [1.0, 2.0, 1.0]));
        centred.move_pivot_to_origin(Pivot::Centre);
        let b = centred.bounds();
        assert_eq!((b.min, b.max), ([-1.0, -2.0, -0.5], [1.0, 2.0, 0.5]));
    }

    #[test]
    fn y_up_turns_y_into_z_and_z_into_minus_y() {
        let t = UpAxis::Y.to_z_up();
        let [x, y, z] = transform_point(&t, [0.0, 1.0, 0.0]);
        assert!(x.abs() < 1e-6 && y.abs() < 1e-6 && (z - 1.0).abs() < 1e-6);
        let [x, y, z] = transform_point(&t, [0.0, 0.0, 1.0]);
        assert!(x.abs() < 1e-6 && (y + 1.0).abs() < 1e-6 && z.abs() < 1e-6);
    }

    #[test]
    fn normalise_centres_and_scales_longest_side_to_one() {
        let mut m = TriMesh::new(
            vec![[1.0, 2.0, 3.0], [5.0, 2.0, 3.0], [1.0, 4.0, 4.0]],
            vec![[0, 1, 2]],
        );
        m.normalise(UpAxis::Z);
        let b = m.bounds();
        assert!((b.longest_side() - 1.0).abs() < 1e-6);
        for k in 0..3 {
            assert!(b.centre()[k].abs() < 1e-6, "{:?}", b);
        }
        assert!((b.extent()[1] - 0.5).abs() < 1e-6);
    }
}
