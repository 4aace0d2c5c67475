//! Meshes with known geometry: analytic test cases and placeholders for examples.

use crate::mesh::TriMesh;

/// A closed, outward-facing UV sphere centred at the origin.
pub fn uv_sphere(radius: f32, rings: u32, segments: u32) -> TriMesh {
    spherical_cap(radius, rings, segments, std::f32::consts::PI, true)
}

/// The upper half (z ≥ 0) of a sphere, open at the equator: a surface with a boundary.
pub fn open_hemisphere(radius: f32, rings: u32, segments: u32) -> TriMesh {
    spherical_cap(radius, rings, segments, std::f32::consts::FRAC_PI_2, false)
}

/// Rings of vertices from the north pole down to polar angle `theta_max`; `close` adds the south
/// pole (only meaningful when `theta_max` is π).
fn spherical_cap(radius: f32, rings: u32, segments: u32, theta_max: f32, close: bool) -> TriMesh {
    let (rings, segments) = (rings.max(2), segments.max(3));
    let mut positions = vec![[0.0, 0.0, radius]];
    let last_ring = if close { rings - 1 } else { rings };
    for r in 1..=last_ring {
        let theta = theta_max * r as f32 / rings as f32;
        for s in 0..segments {
            let phi = std::f32::consts::TAU * s as f32 / segments as f32;
            positions.push([
                radius * theta.sin() * phi.cos(),
                radius * theta.sin() * phi.sin(),
                radius * theta.cos(),
            ]);
        }
    }
    let ring = |r: u32, s: u32| 1 + (r - 1) * segments + s % segments;
    let mut faces = Vec::new();
    for s in 0..segments {
        faces.push([0, ring(1, s), ring(1, s + 1)]);
    }
    for r in 1..last_ring {
        for s in 0..segments {
            let (a, b, c, d) = (
                ring(r, s),
                ring(r, s + 1),
                ring(r + 1, s),
                ring(r + 1, s + 1),
            );
            faces.push([a, c, d]);
            faces.push([a, d, b]);
        }
    }
    if close {
        let south = positions.len() as u32;
        positions.push([0.0, 0.0, -radius]);
        for s in 0..segments {
            faces.push([south, ring(last_ring, s + 1), ring(last_ring, s)]);
        }
    }
    TriMesh::new(positions, faces)
}

/// An axis-aligned box with outward-facing triangles.
pub fn cuboid(min: [f32; 3], max: [f32; 3]) -> TriMesh {
    let corner = |i: u32| [0, 1, 2].map(|k| if i >> k & 1 == 1 { max[k] } else { min[k] });
    let positions = (0..8).map(corner).collect();
    // Corner index bits: x = 1, y = 2, z = 4; each quad is counter-clockwise seen from outside.
    let quads = [
        [0, 2, 3, 1], // z = min
        [4, 5, 7, 6], // z = max
        [0, 1, 5, 4], // y = min
        [2, 6, 7, 3], // y = max
        [0, 4, 6, 2], // x = min
        [1, 3, 7, 5], // x = max
    ];
    let faces = quads
        .iter()
        .flat_map(|[a, b, c, d]| [[*a, *b, *c], [*a, *c, *d]])
        .collect();
    TriMesh::new(positions, faces)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::{area_vector, dot};

    /// Outward orientation: every face's normal points away from the centre.
    fn outward(mesh: &TriMesh) -> bool {
        (0..mesh.faces.len()).all(|f| {
            let t = mesh.triangle(f);
            let c = [0, 1, 2].map(|k| (t[0][k] + t[1][k] + t[2][k]) / 3.0);
            dot(area_vector(&t), c) > 0.0
        })
    }

    #[test]
    fn shapes_face_outwards_and_have_the_right_area() {
        let sphere = uv_sphere(0.5, 48, 96);
        assert!(outward(&sphere));
        let exact = 4.0 * std::f64::consts::PI * 0.25;
        assert!((sphere.area() - exact).abs() / exact < 0.01);
        let cube = cuboid([-0.5; 3], [0.5; 3]);
        assert!(outward(&cube));
        assert!((cube.area() - 6.0).abs() < 1e-9);
        let half = open_hemisphere(1.0, 24, 48);
        assert!(outward(&half));
        assert!((half.area() - std::f64::consts::TAU).abs() / std::f64::consts::TAU < 0.01);
    }
}
