//! A mesh prepared for rendering: positions in f32, texture images decoded, per-face data laid
//! out for the rasterizers and the shader.

use std::path::Path;

use orbitmesh_geom::TriMesh;

use crate::RenderError;

/// A decoded texture, RGBA8, row 0 at the top of the image.
pub struct Texture {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<[u8; 4]>,
}

impl Texture {
    pub fn load(path: &Path) -> Result<Self, RenderError> {
        let img = image::open(path).map_err(|e| RenderError::Image {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let rgba = img.to_rgba8();
        let (width, height) = rgba.dimensions();
        let pixels = rgba.pixels().map(|p| p.0).collect();
        Ok(Texture {
            width,
            height,
            pixels,
        })
    }

    /// Bilinear lookup, OBJ convention (v = 0 at the bottom row). Coordinates repeat outside
    /// 0..1, but the filter does not reach across the image border: scan textures are atlases,
    /// whose opposite edges are unrelated. Returns the stored (sRGB) bytes scaled to 0..1:
    /// textures are shown as they are, unlit.
    pub fn sample(&self, u: f32, v: f32) -> [f32; 3] {
        let (w, h) = (self.width as f32, self.height as f32);
        let x = (u - u.floor()) * w - 0.5;
        let y = (1.0 - (v - v.floor())) * h - 0.5;
        let (x0, y0) = (x.floor(), y.floor());
        let (fx, fy) = (x - x0, y - y0);
        let clamp = |i: f32, n: u32| (i.max(0.0) as usize).min(n as usize - 1);
        let (xa, xb) = (clamp(x0, self.width), clamp(x0 + 1.0, self.width));
        let (ya, yb) = (clamp(y0, self.height), clamp(y0 + 1.0, self.height));
        let px = |x: usize, y: usize| self.pixels[y * self.width as usize + x];
        let (a, b, c, d) = (px(xa, ya), px(xb, ya), px(xa, yb), px(xb, yb));
        [0, 1, 2].map(|k| {
            let top = f32::from(a[k]) * (1.0 - fx) + f32::from(b[k]) * fx;
            let bottom = f32::from(c[k]) * (1.0 - fx) + f32::from(d[k]) * fx;
            (top * (1.0 - fy) + bottom * fy) / 255.0
        })
    }
}

/// How a face is coloured.
pub(crate) enum Paint {
    /// Neutral clay with headlight shading: the mesh has no colour of its own.
    Clay,
    Flat([f32; 3]),
    Textured {
        texture: usize,
        tint: [f32; 3],
    },
    VertexColours,
}

pub struct Scene {
    pub positions: Vec<[f32; 3]>,
    pub faces: Vec<[u32; 3]>,
    pub uvs: Option<Vec<[f32; 2]>>,
    pub colors: Option<Vec<[f32; 3]>>,
    pub textures: Vec<Texture>,
    pub(crate) face_paint: Vec<u32>,
    pub(crate) paints: Vec<Paint>,
    /// Unit face normals (zero for degenerate faces).
    pub normals: Vec<[f32; 3]>,
    /// Light from the camera on the mesh's own colours (texture, vertex or material colours):
    /// each × (ambient + (1 − ambient) · |n · view axis|), the light the fine stage fits to
    /// frames rendered or photographed that way. None (the default) shows them unlit.
    pub headlight: Option<f32>,
}

impl Scene {
    /// Prepares a validated mesh. A texture that cannot be decoded is reported in `warnings` and
    /// the faces using it are drawn in their material colour.
    pub fn new(mesh: &TriMesh, warnings: &mut Vec<String>) -> Result<Self, RenderError> {
        if mesh.faces.is_empty() {
            return Err(RenderError::NoFaces);
        }
        let mut textures = Vec::new();
        let mut paints = Vec::new();
        for m in &mesh.materials {
            let textured = match (&m.diffuse_texture, &mesh.uvs) {
                (Some(path), Some(_)) => match Texture::load(path) {
                    Ok(t) => {
                        textures.push(t);
                        Some(textures.len() - 1)
                    }
                    Err(e) => {
                        warnings.push(format!("{e}; drawing material {} untextured", m.name));
                        None
                    }
                },
                _ => None,
            };
            paints.push(match textured {
                Some(texture) => Paint::Textured {
                    texture,
                    tint: m.diffuse,
                },
                None if mesh.colors.is_some() => Paint::VertexColours,
                None => Paint::Flat(m.diffuse),
            });
        }
        let fallback = paints.len() as u32;
        paints.push(if mesh.colors.is_some() {
            Paint::VertexColours
        } else {
            Paint::Clay
        });
        let face_paint = if mesh.face_materials.is_empty() {
            vec![fallback; mesh.faces.len()]
        } else {
            mesh.face_materials.clone()
        };
        let normals = mesh.face_normals();
        Ok(Scene {
            positions: mesh.positions.clone(),
            faces: mesh.faces.clone(),
            uvs: mesh.uvs.clone(),
            colors: mesh.colors.clone(),
            textures,
            face_paint,
            paints,
            normals,
            headlight: None,
        })
    }
}
