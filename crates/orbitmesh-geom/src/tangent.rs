//! MikkTSpace tangents: the tangent space a normal map is baked in and read with.

use bevy_mikktspace::{Geometry, TangentSpace, generate_tangents};

use crate::mesh::TriMesh;

/// The mesh as MikkTSpace reads it, and the tangents it writes back per vertex.
struct Corners<'a> {
    mesh: &'a TriMesh,
    uvs: &'a [[f32; 2]],
    normals: &'a [[f32; 3]],
    tangents: Vec<[f32; 4]>,
}

impl Geometry for Corners<'_> {
    fn num_faces(&self) -> usize {
        self.mesh.faces.len()
    }

    fn num_vertices_of_face(&self, _face: usize) -> usize {
        3
    }

    fn position(&self, face: usize, vert: usize) -> [f32; 3] {
        self.mesh.positions[self.mesh.faces[face][vert] as usize]
    }

    fn normal(&self, face: usize, vert: usize) -> [f32; 3] {
        self.normals[self.mesh.faces[face][vert] as usize]
    }

    fn tex_coord(&self, face: usize, vert: usize) -> [f32; 2] {
        self.uvs[self.mesh.faces[face][vert] as usize]
    }

    fn set_tangent(&mut self, tangent: Option<TangentSpace>, face: usize, vert: usize) {
        if let Some(t) = tangent {
            self.tangents[self.mesh.faces[face][vert] as usize] = t.tangent_encoded();
        }
    }
}

impl TriMesh {
    /// MikkTSpace tangents of each vertex: xyz along increasing u, w the bitangent's sign (the
    /// bitangent is w · normal × tangent, along increasing v), from the UVs (OBJ convention, v
    /// up the image, as Blender and glTF's normal textures have it) and `normals`, the vertex
    /// normals the mesh is written or shaded with ([`TriMesh::seamless_normals`]). None without
    /// UVs. Corners MikkTSpace leaves without one (only degenerate faces around them) get +x.
    pub fn tangents(&self, normals: &[[f32; 3]]) -> Option<Vec<[f32; 4]>> {
        let uvs = self.uvs.as_deref()?;
        let mut corners = Corners {
            mesh: self,
            uvs,
            normals,
            tangents: vec![[1.0, 0.0, 0.0, 1.0]; self.positions.len()],
        };
        // The error type has no values: generation cannot fail.
        generate_tangents(&mut corners).ok()?;
        // Where MikkTSpace has no direction (every face at the vertex degenerate in space or in
        // UV), any unit tangent across the normal: glTF requires unit tangents.
        for (t, n) in corners.tangents.iter_mut().zip(corners.normals) {
            let length = (t[0] * t[0] + t[1] * t[1] + t[2] * t[2]).sqrt();
            if length > 1e-6 && length.is_finite() {
                *t = [t[0] / length, t[1] / length, t[2] / length, t[3]];
            } else {
                *t = across(*n);
            }
        }
        Some(corners.tangents)
    }
}

/// The tangent frame `[tangent, bitangent, normal]` at a point of a surface, as a glTF shader
/// builds it from the interpolated vertex vectors: the normal made unit, the tangent made
/// perpendicular to it and unit, the bitangent their cross product times the tangent's `sign`.
/// A normal map is baked and read in it.
pub fn tangent_frame(normal: [f32; 3], tangent: [f32; 3], sign: f32) -> [[f32; 3]; 3] {
    let n = unit(normal);
    let along = n[0] * tangent[0] + n[1] * tangent[1] + n[2] * tangent[2];
    let t = unit([0, 1, 2].map(|k| tangent[k] - along * n[k]));
    let b = [
        n[1] * t[2] - n[2] * t[1],
        n[2] * t[0] - n[0] * t[2],
        n[0] * t[1] - n[1] * t[0],
    ]
    .map(|c| c * sign);
    [t, b, n]
}

/// `v` scaled to unit length (zero stays zero).
fn unit(v: [f32; 3]) -> [f32; 3] {
    let length = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    if length > 0.0 {
        v.map(|c| c / length)
    } else {
        v
    }
}

/// A unit vector perpendicular to `n` (+x for a zero normal), as a tangent with sign +1.
fn across(n: [f32; 3]) -> [f32; 4] {
    // Crossed with the axis it is least along, the result is far from zero.
    let axis = if n[0].abs() <= n[1].abs() && n[0].abs() <= n[2].abs() {
        [1.0, 0.0, 0.0]
    } else if n[1].abs() <= n[2].abs() {
        [0.0, 1.0, 0.0]
    } else {
        [0.0, 0.0, 1.0]
    };
    let c = [
        n[1] * axis[2] - n[2] * axis[1],
        n[2] * axis[0] - n[0] * axis[2],
        n[0] * axis[1] - n[1] * axis[0],
    ];
    let length = (c[0] * c[0] + c[1] * c[1] + c[2] * c[2]).sqrt();
    if length > 0.0 {
        [c[0] / length, c[1] / length, c[2] / length, 1.0]
    } else {
        [1.0, 0.0, 0.0, 1.0]
    }
}

#[cfg(test)]
mod tests {
    use crate::TriMesh;
    use crate::shapes::uv_sphere;

    fn dot(a: [f32; 3], b: [f32; 3]) -> f32 {
        a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
    }

    #[test]
    fn a_plane_mapped_by_x_and_y_has_x_tangents_and_a_mirrored_map_flips_the_sign() {
        let mut quad = TriMesh::new(
            vec![
                [0.0, 0.0, 0.0],
                [1.0, 0.0, 0.0],
                [1.0, 1.0, 0.0],
                [0.0, 1.0, 0.0],
            ],
            vec![[0, 1, 2], [0, 2, 3]],
        );
        quad.uvs = Some(quad.positions.iter().map(|p| [p[0], p[1]]).collect());
        for t in quad.tangents(&quad.seamless_normals()).unwrap() {
            assert!((t[0] - 1.0).abs() < 1e-6 && t[1].abs() < 1e-6 && t[2].abs() < 1e-6);
            // Normal +z × tangent +x = +y, the direction v grows in: w = +1.
            assert_eq!(t[3], 1.0);
        }
        // u running along −x: tangent −x, and the bitangent (still +y) is then −(z × −x)... = +1
        // times −y, so w = −1.
        quad.uvs = Some(quad.positions.iter().map(|p| [1.0 - p[0], p[1]]).collect());
        for t in quad.tangents(&quad.seamless_normals()).unwrap() {
            assert!((t[0] + 1.0).abs() < 1e-6, "{t:?}");
            assert_eq!(t[3], -1.0);
        }
        // A triangle of three points on a line: MikkTSpace gives two of its corners a zero
        // tangent, and glTF requires unit ones.
        let mut line = TriMesh::new(
            vec![[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.0, 0.0, 0.0]],
            vec![[0, 1, 2]],
        );
        line.uvs = Some(vec![[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]);
        for t in line.tangents(&line.seamless_normals()).unwrap() {
            let length = (t[0] * t[0] + t[1] * t[1] + t[2] * t[2]).sqrt();
            assert!((length - 1.0).abs() < 1e-6, "{t:?}");
        }
        quad.uvs = None;
        assert!(quad.tangents(&quad.seamless_normals()).is_none());
    }

    #[test]
    fn tangents_on_an_atlas_are_unit_perpendicular_and_follow_u() {
        let atlas = crate::texture::unwrap(&uv_sphere(0.5, 16, 32), 256)
            .unwrap()
            .mesh;
        let normals = atlas.seamless_normals();
        let tangents = atlas.tangents(&normals).unwrap();
        let uvs = atlas.uvs.as_ref().unwrap();
        for (t, n) in tangents.iter().zip(&normals) {
            let t3 = [t[0], t[1], t[2]];
            assert!((dot(t3, t3) - 1.0).abs() < 1e-4, "{t:?}");
            assert!(dot(t3, *n).abs() < 1e-3, "{t:?} vs {n:?}");
        }
        // Each face's own direction of increasing u (dP/du) agrees with its corners' tangents,
        // and its direction of increasing v with their bitangents.
        let mut faces = 0;
        for f in &atlas.faces {
            let [p0, p1, p2] = f.map(|v| atlas.positions[v as usize]);
            let [t0, t1, t2] = f.map(|v| uvs[v as usize]);
            let (e1, e2) = (
                [0, 1, 2].map(|k| p1[k] - p0[k]),
                [0, 1, 2].map(|k| p2[k] - p0[k]),
            );
            let (du1, dv1, du2, dv2) = (t1[0] - t0[0], t1[1] - t0[1], t2[0] - t0[0], t2[1] - t0[1]);
            let det = du1 * dv2 - du2 * dv1;
            if det.abs() < 1e-9 {
                continue;
            }
            let dp_du = [0, 1, 2].map(|k| (e1[k] * dv2 - e2[k] * dv1) / det);
            let dp_dv = [0, 1, 2].map(|k| (e2[k] * du1 - e1[k] * du2) / det);
            for &v in f {
                let (t, n) = (tangents[v as usize], normals[v as usize]);
                let t3 = [t[0], t[1], t[2]];
                let b = [
                    n[1] * t3[2] - n[2] * t3[1],
                    n[2] * t3[0] - n[0] * t3[2],
                    n[0] * t3[1] - n[1] * t3[0],
                ]
                .map(|c| c * t[3]);
                assert!(dot(t3, dp_du) > 0.0 && dot(b, dp_dv) > 0.0, "face {f:?}");
            }
            faces += 1;
        }
        assert!(faces > atlas.faces.len() * 9 / 10);
    }
}
