use std::path::{Path, PathBuf};

use crate::error::{GeomError, Result};

/// A surface material, as far as orbitmesh uses one: a diffuse colour, an optional diffuse
/// texture file and an optional tangent-space normal map (MikkTSpace, green up the image, as
/// glTF and Blender have it); files resolved to paths that exist when the mesh was read, if
/// they existed.
#[derive(Debug, Clone, PartialEq)]
pub struct Material {
    pub name: String,
    pub diffuse: [f32; 3],
    pub diffuse_texture: Option<PathBuf>,
    pub normal_texture: Option<PathBuf>,
}

impl Material {
    pub fn new(name: impl Into<String>) -> Self {
        Material {
            name: name.into(),
            diffuse: [1.0; 3],
            diffuse_texture: None,
            normal_texture: None,
        }
    }
}

/// An indexed triangle mesh. Attributes are per vertex (OBJ corners with different UVs are split
/// into separate vertices on reading), so every renderer can interpolate them with barycentrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TriMesh {
    pub positions: Vec<[f32; 3]>,
    pub faces: Vec<[u32; 3]>,
    /// Texture coordinates, one per vertex, OBJ convention (v = 0 at the bottom of the image).
    pub uvs: Option<Vec<[f32; 2]>>,
    /// Linear RGB in [0, 1], one per vertex.
    pub colors: Option<Vec<[f32; 3]>>,
    pub materials: Vec<Material>,
    /// Index into `materials` for each face; empty when the mesh has no materials.
    pub face_materials: Vec<u32>,
}

/// An axis-aligned bounding box.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aabb {
    pub min: [f64; 3],
    pub max: [f64; 3],
}

impl Aabb {
    pub fn empty() -> Self {
        Aabb {
            min: [f64::INFINITY; 3],
            max: [f64::NEG_INFINITY; 3],
        }
    }

    pub fn of_points<'a>(points: impl IntoIterator<Item = &'a [f32; 3]>) -> Self {
        let mut b = Aabb::empty();
        for p in points {
            b.grow(p.map(f64::from));
        }
        b
    }

    pub fn grow(&mut self, p: [f64; 3]) {
        self.min = [0, 1, 2].map(|k| self.min[k].min(p[k]));
        self.max = [0, 1, 2].map(|k| self.max[k].max(p[k]));
    }

    pub fn union(&self, other: &Aabb) -> Aabb {
        let mut b = *self;
        b.grow(other.min);
        b.grow(other.max);
        b
    }

    pub fn extent(&self) -> [f64; 3] {
        [0, 1, 2].map(|k| self.max[k] - self.min[k])
    }

    pub fn centre(&self) -> [f64; 3] {
        [0, 1, 2].map(|k| 0.5 * (self.max[k] + self.min[k]))
    }

    pub fn longest_side(&self) -> f64 {
        self.extent().into_iter().fold(0.0, f64::max)
    }
}

impl TriMesh {
    pub fn new(positions: Vec<[f32; 3]>, faces: Vec<[u32; 3]>) -> Self {
        TriMesh {
            positions,
            faces,
            ..Default::default()
        }
    }

    pub fn bounds(&self) -> Aabb {
        Aabb::of_points(&self.positions)
    }

    pub fn triangle(&self, face: usize) -> [[f64; 3]; 3] {
        self.faces[face].map(|i| self.positions[i as usize].map(f64::from))
    }

    /// Checks what every stage relies on: at least one face, indices in range, finite
    /// coordinates and attribute arrays of the right length. `path` is only used in the error.
    pub fn validate(&self, path: &Path) -> Result<()> {
        if self.faces.is_empty() {
            return Err(GeomError::EmptyMesh {
                path: path.to_path_buf(),
            });
        }
        let n = self.positions.len();
        for (face, f) in self.faces.iter().enumerate() {
            if let Some(&index) = f.iter().find(|&&i| i as usize >= n) {
                return Err(GeomError::IndexOutOfRange {
                    path: path.to_path_buf(),
                    face,
                    index: index.into(),
                    vertices: n,
                });
            }
        }
        if let Some(vertex) = self
            .positions
            .iter()
            .position(|p| p.iter().any(|c| !c.is_finite()))
        {
            return Err(GeomError::NonFinite {
                path: path.to_path_buf(),
                vertex,
            });
        }
        let invalid = |message: String| GeomError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        if let Some(uvs) = &self.uvs
            && uvs.len() != n
        {
            return Err(invalid(format!("{} UVs for {n} vertices", uvs.len())));
        }
        if let Some(colors) = &self.colors
            && colors.len() != n
        {
            return Err(invalid(format!(
                "{} colours for {n} vertices",
                colors.len()
            )));
        }
        if !self.face_materials.is_empty() {
            if self.face_materials.len() != self.faces.len() {
                return Err(invalid(format!(
                    "{} face materials for {} faces",
                    self.face_materials.len(),
                    self.faces.len()
                )));
            }
            if let Some(m) = self
                .face_materials
                .iter()
                .find(|&&m| m as usize >= self.materials.len())
            {
                return Err(invalid(format!(
                    "material {m} used, but only {} defined",
                    self.materials.len()
                )));
            }
        }
        Ok(())
    }

    /// The unit normal of each face (right-handed winding); zero for degenerate faces.
    pub fn face_normals(&self) -> Vec<[f32; 3]> {
        (0..self.faces.len())
            .map(|f| {
                let a = area_vector(&self.triangle(f));
                let len = norm(a);
                if len > 0.0 {
                    a.map(|x| (x / len) as f32)
                } else {
                    [0.0; 3]
                }
            })
            .collect()
    }

    /// The area-weighted unit normal of each vertex; zero where no face with area touches it.
    pub fn vertex_normals(&self) -> Vec<[f32; 3]> {
        self.normals_summed_over(&(0..self.positions.len()).collect::<Vec<_>>())
    }

    /// As [`TriMesh::vertex_normals`], but the vertices at one position share theirs: a UV seam
    /// splits vertices, not the surface, and must not show in the shading. The normals written
    /// to files, and those normal maps are baked against.
    pub fn seamless_normals(&self) -> Vec<[f32; 3]> {
        self.normals_summed_over(&welded_ids(&self.positions))
    }

    /// Each vertex's unit normal summed (area-weighted) over the faces of every vertex with the
    /// same `group` id as it.
    fn normals_summed_over(&self, group: &[usize]) -> Vec<[f32; 3]> {
        let mut sums = vec![[0.0f64; 3]; self.positions.len()];
        for (f, face) in self.faces.iter().enumerate() {
            let a = area_vector(&self.triangle(f));
            for &v in face {
                for k in 0..3 {
                    sums[group[v as usize]][k] += a[k];
                }
            }
        }
        group
            .iter()
            .map(|&g| {
                let s = sums[g];
                let len = norm(s);
                if len > 0.0 {
                    s.map(|x| (x / len) as f32)
                } else {
                    [0.0; 3]
                }
            })
            .collect()
    }

    /// Total surface area.
    pub fn area(&self) -> f64 {
        (0..self.faces.len())
            .map(|f| triangle_area(&self.triangle(f)))
            .sum()
    }
}

/// For each point, an id shared by exactly the points at the same position (the first such
/// point's index): the vertices welded by position.
pub(crate) fn welded_ids(positions: &[[f32; 3]]) -> Vec<usize> {
    let mut ids = std::collections::HashMap::new();
    positions
        .iter()
        .enumerate()
        .map(|(i, p)| *ids.entry(p.map(f32::to_bits)).or_insert(i))
        .collect()
}

pub(crate) fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

pub(crate) fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

pub(crate) fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

pub(crate) fn norm(a: [f64; 3]) -> f64 {
    dot(a, a).sqrt()
}

/// Twice-area vector of a triangle: its direction is the (right-handed) normal.
pub(crate) fn area_vector(t: &[[f64; 3]; 3]) -> [f64; 3] {
    cross(sub(t[1], t[0]), sub(t[2], t[0]))
}

pub fn triangle_area(t: &[[f64; 3]; 3]) -> f64 {
    0.5 * norm(area_vector(t))
}
