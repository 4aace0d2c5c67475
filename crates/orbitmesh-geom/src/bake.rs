//! Baking a detailed surface onto a low-poly mesh of it, as Blender's "selected to active" and
//! xNormal do: a fresh atlas for the low-poly mesh, its base colour taken from the detailed
//! surface, and a tangent-space normal map (MikkTSpace) of the detailed surface's normals, so the
//! shading keeps the detail the face budget dropped.

use std::io::Write;
use std::path::{Path, PathBuf};

use image::RgbaImage;
use kiddo::SquaredEuclidean;
use kiddo::immutable::float::kdtree::ImmutableKdTree;
use rayon::prelude::*;

use crate::error::{GeomError, Result};
use crate::io::write_atomic;
use crate::mesh::{Material, TriMesh, dot, sub, welded_ids};
use crate::tangent::tangent_frame;
use crate::texture::{PADDING, dilate, for_each_texel, sample, texel_colour, unwrap};

/// A low-poly mesh with its baked textures.
pub struct Baked {
    /// The low-poly mesh on its own atlas (vertices split at the atlas's seams, faces in their
    /// order), without colours or materials until [`Baked::save`] attaches them.
    pub mesh: TriMesh,
    /// The detailed surface's colour at each texel.
    pub base_colour: RgbaImage,
    /// The detailed surface's normal in the low-poly mesh's tangent space, (n + 1) / 2 per
    /// channel: red along the tangent (+u), green along the bitangent (+v, up the image), blue
    /// along the low-poly normal. Texels no face covers hold the dilated border.
    pub normal_map: RgbaImage,
}

/// The file format baked textures are saved in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TextureFormat {
    Png,
    /// Smaller files; lossy, which a normal map shows as faint blocks in the shading.
    Jpeg,
}

impl TextureFormat {
    fn extension(self) -> &'static str {
        match self {
            TextureFormat::Png => "png",
            TextureFormat::Jpeg => "jpg",
        }
    }
}

/// How [`low_poly`] bakes: the textures' side in texels and their file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BakeOptions {
    pub size: u32,
    pub format: TextureFormat,
}

impl Default for BakeOptions {
    fn default() -> Self {
        BakeOptions {
            size: 1024,
            format: TextureFormat::Png,
        }
    }
}

/// `high` decimated to at most `faces` faces ([`decimated`]) and, with `bake`, given a fresh
/// atlas with `high`'s colour and normals baked into it (see [`bake_onto`]), the two textures
/// written into `dir` as `<stem>_basecolor` and `<stem>_normal`. A mesh to bake onto is decimated
/// without `high`'s UV seams, since it gets an atlas of its own.
pub fn low_poly(
    high: &TriMesh,
    faces: usize,
    bake: Option<&BakeOptions>,
    dir: &Path,
    stem: &str,
) -> Result<TriMesh> {
    match bake {
        Some(options) => {
            // The low-poly mesh gets an atlas of its own, so the detailed mesh's UV seams, which
            // the simplifier would keep (and with them faces: a fine stage's atlas splits its
            // vertices along many), go first.
            let surface = Surface::new(high)?;
            let mut low = welded(high).simplified(faces);
            if low.faces.len() < high.faces.len() {
                fit_to_surface(&mut low, &surface);
            }
            bake_with(&low, &surface, options.size)?.save(dir, stem, options.format)
        }
        None => decimated(high, faces),
    }
}

/// `high` simplified to at most `faces` faces ([`TriMesh::simplified`]), its vertices then moved
/// so that its faces straddle `high`'s surface rather than cut chords inside it; its UV seams stay,
/// closed.
pub fn decimated(high: &TriMesh, faces: usize) -> Result<TriMesh> {
    let mut low = high.simplified(faces);
    if low.faces.len() < high.faces.len() {
        fit_to_surface(&mut low, &Surface::shape(high)?);
    }
    Ok(low)
}

impl Baked {
    /// Writes the two textures into `dir` as `<stem>_basecolor` and `<stem>_normal` (each under
    /// a temporary name, then renamed) and returns the mesh with one material using them.
    pub fn save(&self, dir: &Path, stem: &str, format: TextureFormat) -> Result<TriMesh> {
        let mut files = Vec::new();
        for (image, role) in [
            (&self.base_colour, "basecolor"),
            (&self.normal_map, "normal"),
        ] {
            let path = dir.join(format!("{stem}_{role}.{}", format.extension()));
            let encoded = encode(image, format).map_err(|message| GeomError::Invalid {
                path: path.clone(),
                message,
            })?;
            write_atomic(&path, |w| w.write_all(&encoded))?;
            files.push(path);
        }
        let mut mesh = self.mesh.clone();
        let normal = files.pop();
        mesh.materials = vec![Material {
            diffuse_texture: files.pop(),
            normal_texture: normal,
            ..Material::new(stem)
        }];
        mesh.face_materials = vec![0; mesh.faces.len()];
        Ok(mesh)
    }
}

fn encode(image: &RgbaImage, format: TextureFormat) -> std::result::Result<Vec<u8>, String> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    let result = match format {
        TextureFormat::Png => image.write_to(&mut bytes, image::ImageFormat::Png),
        // JPEG has no alpha; the textures are opaque.
        TextureFormat::Jpeg => image::DynamicImage::ImageRgba8(image.clone())
            .to_rgb8()
            .write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(
                &mut bytes, 92,
            )),
    };
    result.map_err(|e| e.to_string())?;
    Ok(bytes.into_inner())
}

/// Bakes `high` (the detailed surface: its first material's texture, else its vertex colours,
/// else its material colours) onto `low` at `size`² texels.
pub fn bake_onto(low: &TriMesh, high: &TriMesh, size: u32) -> Result<Baked> {
    bake_with(low, &Surface::new(high)?, size)
}

/// Where on each face of a mesh its distance to the detailed surface is sampled: the centroid,
/// the edges' midpoints and the points between the centroid and the corners.
const FIT_SAMPLES: [[f64; 3]; 7] = [
    [1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0],
    [0.5, 0.5, 0.0],
    [0.0, 0.5, 0.5],
    [0.5, 0.0, 0.5],
    [2.0 / 3.0, 1.0 / 6.0, 1.0 / 6.0],
    [1.0 / 6.0, 2.0 / 3.0, 1.0 / 6.0],
    [1.0 / 6.0, 1.0 / 6.0, 2.0 / 3.0],
];

/// Moves each vertex of a welded mesh along its normal by the mean signed distance from its
/// faces to `surface`, sampled over them and weighted towards the vertex. The simplifier keeps
/// vertices on the detailed surface, so its faces are chords: inside the surface where it bulges
/// (a smaller silhouette), outside where it hollows. Moved, they straddle it.
fn fit_to_surface(mesh: &mut TriMesh, surface: &Surface) {
    // Per position, so the split vertices of a UV seam move together and it stays closed.
    let normals = mesh.seamless_normals();
    let ids = welded_ids(&mesh.positions);
    let offsets: Vec<[f64; 7]> = mesh
        .faces
        .par_iter()
        .map(|&face| {
            FIT_SAMPLES.map(|b| {
                let p = blend(face, b, &mesh.positions);
                let n = normalised(blend(face, b, &normals));
                let q = surface.point(&surface.closest(p, n));
                dot(sub(q, p.map(f64::from)), n.map(f64::from))
            })
        })
        .collect();
    let mut sum = vec![0.0f64; mesh.positions.len()];
    let mut weight = vec![0.0f64; mesh.positions.len()];
    for (face, offsets) in mesh.faces.iter().zip(&offsets) {
        for (b, d) in FIT_SAMPLES.iter().zip(offsets) {
            for (k, &v) in face.iter().enumerate() {
                sum[ids[v as usize]] += b[k] * d;
                weight[ids[v as usize]] += b[k];
            }
        }
    }
    for (v, p) in mesh.positions.iter_mut().enumerate() {
        let id = ids[v];
        if weight[id] > 0.0 {
            let d = (sum[id] / weight[id]) as f32;
            *p = [0, 1, 2].map(|k| p[k] + d * normals[v][k]);
        }
    }
}

/// [`bake_onto`] with the detailed surface ready.
fn bake_with(low: &TriMesh, surface: &Surface, size: u32) -> Result<Baked> {
    // The atlas charts the surface, not the old atlas's pieces: weld the split vertices first.
    let welded = welded(low);
    let atlas = unwrap(&welded, size)?;
    let mut texels = Vec::new();
    for (f, face) in atlas.mesh.faces.iter().enumerate() {
        let corners = face.map(|v| atlas.texel(v));
        for_each_texel(size, size, corners, |x, y, b| texels.push((x, y, f, b)));
    }
    let mesh = atlas.mesh;
    let normals = mesh.seamless_normals();
    let tangents = mesh.tangents(&normals).expect("an atlas has UVs");
    let values: Vec<([f32; 3], [f32; 3])> = texels
        .par_iter()
        .with_min_len(256)
        .map(|&(_, _, f, b)| {
            let face = mesh.faces[f];
            let blend = |values: &dyn Fn(usize) -> [f32; 3]| {
                let c = face.map(|v| values(v as usize));
                [0, 1, 2].map(|k| b[0] * c[0][k] + b[1] * c[1][k] + b[2] * c[2][k])
            };
            // The frame a shader reads the map in, from the interpolated vertex vectors.
            let frame = tangent_frame(
                blend(&|v| normals[v]),
                blend(&|v| {
                    let t = tangents[v];
                    [t[0], t[1], t[2]]
                }),
                tangents[face[0] as usize][3],
            );
            let hit = surface.closest(blend(&|v| mesh.positions[v]), frame[2]);
            let detail = surface.normal(&hit);
            let encoded = frame.map(|axis| {
                let along = axis[0] * detail[0] + axis[1] * detail[1] + axis[2] * detail[2];
                0.5 * along + 0.5
            });
            (surface.colour(&hit), encoded)
        })
        .collect();
    let mut base_colour = RgbaImage::new(size, size);
    let mut normal_map = RgbaImage::new(size, size);
    for (&(x, y, _, _), (colour, normal)) in texels.iter().zip(values) {
        base_colour.put_pixel(x, y, texel_colour(colour));
        normal_map.put_pixel(x, y, texel_colour(normal));
    }
    dilate(&mut base_colour, 2 * PADDING);
    dilate(&mut normal_map, 2 * PADDING);
    Ok(Baked {
        mesh,
        base_colour,
        normal_map,
    })
}

/// `mesh`'s positions and faces with the vertices at one position merged.
fn welded(mesh: &TriMesh) -> TriMesh {
    let ids = welded_ids(&mesh.positions);
    let mut index = vec![u32::MAX; mesh.positions.len()];
    let mut positions = Vec::new();
    for (v, &id) in ids.iter().enumerate() {
        if index[id] == u32::MAX {
            index[id] = positions.len() as u32;
            positions.push(mesh.positions[v]);
        }
    }
    let faces = mesh
        .faces
        .iter()
        .map(|f| f.map(|v| index[ids[v as usize]]))
        .collect();
    TriMesh::new(positions, faces)
}

fn normalised(v: [f32; 3]) -> [f32; 3] {
    normalised_f64(v.map(f64::from)).map(|c| c as f32)
}

fn normalised_f64(v: [f64; 3]) -> [f64; 3] {
    let len = dot(v, v).sqrt();
    if len > 0.0 { v.map(|c| c / len) } else { v }
}

/// A point on the detailed surface: its face and barycentric coordinates there.
struct Hit {
    face: usize,
    bary: [f64; 3],
}

/// Where a face of the detailed surface gets its colour.
enum Paint {
    Texture(RgbaImage),
    VertexColours,
    Flat([f32; 3]),
}

/// The detailed surface, ready for closest-point queries: a k-d tree of its faces' centroids.
struct Surface<'a> {
    mesh: &'a TriMesh,
    tree: ImmutableKdTree<f32, u32, 3, 32>,
    /// The largest distance from a face's centroid to its corners.
    reach: f32,
    normals: Vec<[f32; 3]>,
    face_normals: Vec<[f32; 3]>,
    paints: Vec<Paint>,
}

impl<'a> Surface<'a> {
    /// The surface with its paints, for baking.
    fn new(mesh: &'a TriMesh) -> Result<Self> {
        let mut surface = Surface::shape(mesh)?;
        for m in &mesh.materials {
            surface.paints.push(match (&m.diffuse_texture, &mesh.uvs) {
                (Some(file), Some(_)) => Paint::Texture(load(file)?),
                _ if mesh.colors.is_some() => Paint::VertexColours,
                _ => Paint::Flat(m.diffuse),
            });
        }
        if surface.paints.is_empty() {
            surface.paints.push(if mesh.colors.is_some() {
                Paint::VertexColours
            } else {
                Paint::Flat([0.8; 3])
            });
        }
        Ok(surface)
    }

    /// The surface's shape alone, for closest points: no texture is read.
    fn shape(mesh: &'a TriMesh) -> Result<Self> {
        if mesh.faces.is_empty() {
            return Err(GeomError::Texture("the detailed mesh has no faces".into()));
        }
        let centroids: Vec<[f32; 3]> = (0..mesh.faces.len())
            .map(|f| {
                let t = mesh.triangle(f);
                [0, 1, 2].map(|k| ((t[0][k] + t[1][k] + t[2][k]) / 3.0) as f32)
            })
            .collect();
        let reach = centroids
            .iter()
            .enumerate()
            .map(|(f, c)| {
                mesh.faces[f]
                    .iter()
                    .map(|&v| {
                        let p = mesh.positions[v as usize];
                        (0..3).map(|k| (p[k] - c[k]).powi(2)).sum::<f32>().sqrt()
                    })
                    .fold(0.0, f32::max)
            })
            .fold(0.0, f32::max);
        Ok(Surface {
            mesh,
            tree: ImmutableKdTree::new_from_slice(&centroids),
            reach,
            normals: mesh.seamless_normals(),
            face_normals: mesh.face_normals(),
            paints: Vec::new(),
        })
    }

    /// The closest point of the surface to `point`, among the faces that face the same way as
    /// `normal` if any is that close (a thin part's far side is as close as its near side).
    fn closest(&self, point: [f32; 3], normal: [f32; 3]) -> Hit {
        let nearest = self.tree.nearest_one::<SquaredEuclidean>(&point);
        // No face whose centroid is further than this can hold a point closer than the nearest
        // centroid.
        let radius = nearest.distance.sqrt() + self.reach;
        let candidates = self
            .tree
            .within_unsorted::<SquaredEuclidean>(&point, radius * radius * 1.0001);
        let p = point.map(f64::from);
        let mut best: Option<(bool, f64, Hit)> = None;
        for candidate in candidates {
            let face = candidate.item as usize;
            let (q, bary) = closest_on_triangle(p, &self.mesh.triangle(face));
            let d = sub(q, p);
            let distance = dot(d, d);
            let n = self.face_normals[face];
            let facing = n[0] * normal[0] + n[1] * normal[1] + n[2] * normal[2] >= 0.0;
            let better = match &best {
                None => true,
                Some((best_facing, best_distance, _)) => {
                    (facing && !best_facing)
                        || (facing == *best_facing && distance < *best_distance)
                }
            };
            if better {
                best = Some((facing, distance, Hit { face, bary }));
            }
        }
        best.map(|(_, _, hit)| hit).unwrap_or(Hit {
            face: nearest.item as usize,
            bary: [1.0 / 3.0; 3],
        })
    }

    /// The point of the surface at `hit` (in f64, as `closest` finds it).
    fn point(&self, hit: &Hit) -> [f64; 3] {
        let t = self.mesh.triangle(hit.face);
        [0, 1, 2].map(|k| (0..3).map(|i| hit.bary[i] * t[i][k]).sum())
    }

    /// The surface's smooth normal at `hit`.
    fn normal(&self, hit: &Hit) -> [f32; 3] {
        normalised(blend(self.mesh.faces[hit.face], hit.bary, &self.normals))
    }

    /// The surface's colour (0..1) at `hit`.
    fn colour(&self, hit: &Hit) -> [f32; 3] {
        let face = self.mesh.faces[hit.face];
        let material = self.mesh.face_materials.get(hit.face).copied().unwrap_or(0) as usize;
        match &self.paints[material.min(self.paints.len() - 1)] {
            Paint::Texture(image) => {
                let [u, v] = blend(face, hit.bary, self.mesh.uvs.as_deref().unwrap_or_default());
                let tint = self.mesh.materials[material].diffuse;
                let c = sample(image, u, v);
                [0, 1, 2].map(|k| c[k] * tint[k])
            }
            Paint::VertexColours => blend(
                face,
                hit.bary,
                self.mesh.colors.as_deref().unwrap_or_default(),
            ),
            Paint::Flat(c) => *c,
        }
    }
}

/// The per-vertex `values` of `face` at barycentric coordinates `bary`.
fn blend<const N: usize>(face: [u32; 3], bary: [f64; 3], values: &[[f32; N]]) -> [f32; N] {
    std::array::from_fn(|k| {
        (0..3)
            .map(|i| bary[i] as f32 * values[face[i] as usize][k])
            .sum()
    })
}

fn load(file: &PathBuf) -> Result<RgbaImage> {
    image::open(file)
        .map(|i| i.to_rgba8())
        .map_err(|e| GeomError::Invalid {
            path: file.clone(),
            message: format!("cannot read the texture: {e}"),
        })
}

/// The point of triangle `t` closest to `p`, and its barycentric coordinates (Ericson,
/// Real-Time Collision Detection, 5.1.5).
fn closest_on_triangle(p: [f64; 3], t: &[[f64; 3]; 3]) -> ([f64; 3], [f64; 3]) {
    let [a, b, c] = *t;
    let (ab, ac, ap) = (sub(b, a), sub(c, a), sub(p, a));
    let at =
        |u: f64, v: f64, w: f64| ([0, 1, 2].map(|k| u * a[k] + v * b[k] + w * c[k]), [u, v, w]);
    let (d1, d2) = (dot(ab, ap), dot(ac, ap));
    if d1 <= 0.0 && d2 <= 0.0 {
        return at(1.0, 0.0, 0.0);
    }
    let bp = sub(p, b);
    let (d3, d4) = (dot(ab, bp), dot(ac, bp));
    if d3 >= 0.0 && d4 <= d3 {
        return at(0.0, 1.0, 0.0);
    }
    let vc = d1 * d4 - d3 * d2;
    if vc <= 0.0 && d1 >= 0.0 && d3 <= 0.0 {
        let v = d1 / (d1 - d3);
        return at(1.0 - v, v, 0.0);
    }
    let cp = sub(p, c);
    let (d5, d6) = (dot(ab, cp), dot(ac, cp));
    if d6 >= 0.0 && d5 <= d6 {
        return at(0.0, 0.0, 1.0);
    }
    let vb = d5 * d2 - d1 * d6;
    if vb <= 0.0 && d2 >= 0.0 && d6 <= 0.0 {
        let w = d2 / (d2 - d6);
        return at(1.0 - w, 0.0, w);
    }
    let va = d3 * d6 - d5 * d4;
    if va <= 0.0 && (d4 - d3) >= 0.0 && (d5 - d6) >= 0.0 {
        let w = (d4 - d3) / ((d4 - d3) + (d5 - d6));
        return at(0.0, 1.0 - w, w);
    }
    let denom = va + vb + vc;
    if denom.abs() < 1e-300 {
        // A degenerate triangle: its first corner.
        return at(1.0, 0.0, 0.0);
    }
    let (v, w) = (vb / denom, vc / denom);
    at(1.0 - v - w, v, w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shapes::uv_sphere;

    /// Decodes a normal-map texel into the normal it stands for, in `frame`
    /// ([tangent, bitangent, normal]).
    fn decode(baked: &Baked, x: u32, y: u32, frame: [[f32; 3]; 3]) -> [f64; 3] {
        let c = baked.normal_map.get_pixel(x, y);
        let v = [0, 1, 2].map(|k| f64::from(c[k]) / 255.0 * 2.0 - 1.0);
        let f = frame.map(|axis| axis.map(f64::from));
        normalised_f64([0, 1, 2].map(|k| v[0] * f[0][k] + v[1] * f[1][k] + v[2] * f[2][k]))
    }

    #[test]
    fn closest_points_on_a_triangle_match_brute_force() {
        let t = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.2, 0.9, 0.1]];
        for p in [
            [0.3, 0.3, 0.5],
            [-1.0, -1.0, 0.0],
            [2.0, 0.1, 0.0],
            [0.5, -0.5, 0.2],
            [0.7, 0.7, -0.3],
            [0.1, 2.0, 0.0],
        ] {
            let (q, b) = closest_on_triangle(p, &t);
            assert!((b.iter().sum::<f64>() - 1.0).abs() < 1e-12 && b.iter().all(|&v| v >= -1e-12));
            let d = |q: [f64; 3]| dot(sub(q, p), sub(q, p));
            let mut brute = f64::MAX;
            for i in 0..=200 {
                for j in 0..=(200 - i) {
                    let (u, v) = (i as f64 / 200.0, j as f64 / 200.0);
                    let w = 1.0 - u - v;
                    brute =
                        brute.min(d([0, 1, 2].map(|k| w * t[0][k] + u * t[1][k] + v * t[2][k])));
                }
            }
            assert!(
                d(q) <= brute + 1e-9 && d(q) > brute - 1e-3,
                "{p:?}: {} vs {brute}",
                d(q)
            );
        }
    }

    #[test]
    fn a_coarse_sphere_baked_from_a_fine_one_gets_the_round_normals_and_the_colours() {
        // The detailed surface: a fine sphere coloured by position. The low-poly one: a coarse
        // sphere of 96 faces, whose flat facets the normal map must round off.
        let mut high = uv_sphere(0.5, 48, 96);
        let colour = |p: [f32; 3]| p.map(|c| 0.5 + c);
        high.colors = Some(high.positions.iter().map(|&p| colour(p)).collect());
        let low = uv_sphere(0.5, 8, 12);
        let baked = bake_onto(&low, &high, 256).unwrap();
        assert_eq!(baked.mesh.faces.len(), low.faces.len());
        let mesh = &baked.mesh;
        let normals = mesh.seamless_normals();
        let tangents = mesh.tangents(&normals).unwrap();
        let uvs = mesh.uvs.as_ref().unwrap();
        let (mut worst_angle, mut worst_colour, mut texels) = (0.0f64, 0.0f32, 0);
        let mut flat_worst = 0.0f64;
        for (f, face) in mesh.faces.iter().enumerate() {
            let corners = face.map(|v| {
                [
                    uvs[v as usize][0] * 256.0,
                    (1.0 - uvs[v as usize][1]) * 256.0,
                ]
            });
            for_each_texel(256, 256, corners, |x, y, b| {
                if b.iter().any(|&v| v < 0.05) {
                    return; // away from the edges, where texels are shared with other charts
                }
                let at = |values: &dyn Fn(usize) -> [f32; 3]| {
                    let c = face.map(|v| values(v as usize));
                    [0, 1, 2].map(|k| f64::from(b[0] * c[0][k] + b[1] * c[1][k] + b[2] * c[2][k]))
                };
                let point = at(&|v| mesh.positions[v]);
                let lerp = |values: &dyn Fn(usize) -> [f32; 3]| at(values).map(|c| c as f32);
                let frame = tangent_frame(
                    lerp(&|v| normals[v]),
                    lerp(&|v| [tangents[v][0], tangents[v][1], tangents[v][2]]),
                    tangents[face[0] as usize][3],
                );
                let decoded = decode(&baked, x, y, frame);
                // The fine sphere's normal there is radial.
                let radial = normalised_f64(point);
                worst_angle = worst_angle.max(dot(decoded, radial).clamp(-1.0, 1.0).acos());
                let facet = mesh.face_normals()[f].map(f64::from);
                flat_worst = flat_worst.max(dot(facet, radial).clamp(-1.0, 1.0).acos());
                let got = baked.base_colour.get_pixel(x, y);
                let want = colour(point.map(|c| c as f32));
                for k in 0..3 {
                    worst_colour = worst_colour.max((f32::from(got[k]) / 255.0 - want[k]).abs());
                }
                texels += 1;
            });
        }
        assert!(texels > 5000, "{texels}");
        assert!(
            worst_angle.to_degrees() < 4.0,
            "decoded vs radial: {:.2}° (the facets are off by {:.1}°)",
            worst_angle.to_degrees(),
            flat_worst.to_degrees()
        );
        assert!(flat_worst.to_degrees() > 15.0);
        // The colour of the fine surface's closest point: within the step between the two
        // spheres (a few hundredths at this coarseness) and 8-bit rounding.
        assert!(worst_colour < 0.08, "{worst_colour}");
    }

    /// A sphere whose atlas gives every face its own chart (a UV seam along every edge), as a
    /// fine stage's texture atlas splits its vertices along many seams.
    fn sphere_split_at_every_edge() -> TriMesh {
        let sphere = uv_sphere(0.5, 32, 64);
        let corners: Vec<[f32; 3]> = sphere
            .faces
            .iter()
            .flat_map(|f| f.map(|v| sphere.positions[v as usize]))
            .collect();
        let mut split = TriMesh::new(
            corners,
            (0..sphere.faces.len() as u32)
                .map(|f| [3 * f, 3 * f + 1, 3 * f + 2])
                .collect(),
        );
        split.uvs = Some(vec![[0.5, 0.5]; split.positions.len()]);
        split.colors = Some(vec![[0.5; 3]; split.positions.len()]);
        split
    }

    #[test]
    fn the_budget_ignores_the_detailed_meshs_uv_seams() {
        // The seams belong to the old atlas, so the low-poly mesh, which gets a new one, is
        // decimated as if they were not there.
        let high = sphere_split_at_every_edge();
        let dir = tempfile::tempdir().unwrap();
        let options = BakeOptions {
            size: 64,
            ..Default::default()
        };
        let low = low_poly(&high, 300, Some(&options), dir.path(), "s").unwrap();
        assert!(
            (240..=300).contains(&low.faces.len()),
            "{} faces",
            low.faces.len()
        );
        // A closed surface still: every welded edge between two faces.
        assert_eq!(low.open_and_non_manifold_edges(), (0, 0));
    }

    #[test]
    fn a_decimated_mesh_keeps_its_uv_seams_closed_when_fitted() {
        // Without a bake the seams stay (the texture needs them): the vertices split along one
        // move as one, or it would open. The bowl's scan has a texture atlas.
        let bowl = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/gso-mini/GSO_bead_bowl");
        let high = crate::read_mesh(&bowl).unwrap().mesh;
        let dir = tempfile::tempdir().unwrap();
        let low = low_poly(&high, 2000, None, dir.path(), "s").unwrap();
        let unfitted = high.simplified(2000);
        assert_eq!(low.faces, unfitted.faces);
        assert_eq!(
            low.open_and_non_manifold_edges(),
            unfitted.open_and_non_manifold_edges()
        );
        let seam_vertices = low.positions.len() - {
            let mut ids = welded_ids(&low.positions);
            ids.sort_unstable();
            ids.dedup();
            ids.len()
        };
        assert!(seam_vertices > 50, "{seam_vertices} vertices on seams");
        let moved = (low.positions.iter().zip(&unfitted.positions))
            .filter(|(a, b)| a != b)
            .count();
        assert!(
            moved * 2 > low.positions.len(),
            "{moved} of {} moved",
            low.positions.len()
        );
    }

    #[test]
    fn decimating_reads_no_texture() {
        // The fit needs the surface's shape only: a texture that cannot be read is the writer's
        // business (it warns), not the decimation's.
        let mut high = uv_sphere(0.5, 24, 48);
        high.uvs = Some(vec![[0.5, 0.5]; high.positions.len()]);
        high.materials = vec![Material {
            diffuse_texture: Some(PathBuf::from("/nonexistent/texture.png")),
            ..Material::new("m")
        }];
        high.face_materials = vec![0; high.faces.len()];
        let low = decimated(&high, 200).unwrap();
        assert!(low.faces.len() <= 200);
    }

    #[test]
    fn fitting_moves_the_chords_of_a_coarse_sphere_onto_the_fine_one() {
        let high = uv_sphere(0.5, 48, 96);
        let surface = Surface::new(&high).unwrap();
        let mut low = welded(&uv_sphere(0.5, 8, 12));
        // The signed distance from the sphere over the faces, as a mean and a worst.
        let offsets = |mesh: &TriMesh| {
            let d: Vec<f64> = mesh
                .faces
                .iter()
                .flat_map(|&f| FIT_SAMPLES.map(|b| blend(f, b, &mesh.positions)))
                .map(|p| dot(p.map(f64::from), p.map(f64::from)).sqrt() - 0.5)
                .collect();
            let mean = d.iter().sum::<f64>() / d.len() as f64;
            (mean, d.iter().fold(0.0f64, |m, v| m.max(v.abs())))
        };
        let (mean_before, worst_before) = offsets(&low);
        fit_to_surface(&mut low, &surface);
        let (mean_after, worst_after) = offsets(&low);
        // Chords: inside the sphere everywhere but at the corners.
        assert!(mean_before < -0.01, "{mean_before}");
        assert!(
            mean_after.abs() < 0.2 * mean_before.abs() && worst_after < 0.8 * worst_before,
            "mean {mean_before:.4} -> {mean_after:.4}, worst {worst_before:.4} -> {worst_after:.4}"
        );
    }

    #[test]
    fn the_saved_textures_round_trip_through_obj_with_their_material() {
        let dir = tempfile::tempdir().unwrap();
        let mut high = uv_sphere(0.5, 24, 48);
        high.colors = Some(vec![[0.2, 0.4, 0.6]; high.positions.len()]);
        let baked = bake_onto(&uv_sphere(0.5, 6, 8), &high, 64).unwrap();
        let mesh = baked.save(dir.path(), "pot", TextureFormat::Jpeg).unwrap();
        let obj = dir.path().join("out").join("pot.obj");
        std::fs::create_dir(obj.parent().unwrap()).unwrap();
        crate::write_mesh(&obj, &mesh).unwrap();
        let back = crate::read_mesh(&obj).unwrap().mesh;
        let material = &back.materials[0];
        let name = |p: &Option<PathBuf>| p.as_ref().unwrap().file_name().unwrap().to_owned();
        assert_eq!(name(&material.diffuse_texture), "pot_basecolor.jpg");
        assert_eq!(name(&material.normal_texture), "pot_normal.jpg");
        let colour = image::open(material.diffuse_texture.as_ref().unwrap())
            .unwrap()
            .to_rgb8();
        let centre = colour.get_pixel(32, 32);
        assert!(
            centre
                .0
                .iter()
                .zip([51, 102, 153])
                .all(|(&a, b)| a.abs_diff(b) <= 4),
            "{centre:?}"
        );
    }
}
