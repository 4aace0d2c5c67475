//! A mesh prepared for rendering: positions in f32, texture images decoded, per-face data laid
//! out for the rasterizers and the shader.

use std::path::Path;

use image::RgbaImage;
use orbitmesh_geom::TriMesh;

use crate::RenderError;

/// Decodes a texture file.
fn load_texture(path: &Path) -> Result<RgbaImage, RenderError> {
    image::open(path)
        .map(|i| i.to_rgba8())
        .map_err(|e| RenderError::Image {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
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

/// What a normal map is read with: the mesh's shading normals and MikkTSpace tangents, per
/// vertex, as the GLB carries them.
pub(crate) struct TangentFrames {
    pub normals: Vec<[f32; 3]>,
    pub tangents: Vec<[f32; 4]>,
}

pub struct Scene {
    pub positions: Vec<[f32; 3]>,
    pub faces: Vec<[u32; 3]>,
    pub uvs: Option<Vec<[f32; 2]>>,
    pub colors: Option<Vec<[f32; 3]>>,
    /// Decoded textures (colour and normal maps), row 0 at the top of the image.
    pub textures: Vec<RgbaImage>,
    pub(crate) face_paint: Vec<u32>,
    pub(crate) paints: Vec<Paint>,
    /// The normal map (an index into `textures`) of each paint, if it has one.
    pub(crate) normal_maps: Vec<Option<usize>>,
    /// Present when some paint has a normal map.
    pub(crate) tangent_frames: Option<TangentFrames>,
    /// Unit face normals (zero for degenerate faces).
    pub normals: Vec<[f32; 3]>,
    /// Light from the camera on the mesh's own colours (texture, vertex or material colours):
    /// each × (ambient + (1 − ambient) · |n · view axis|), the light the fine stage fits to
    /// frames rendered or photographed that way. None (the default) shows them unlit.
    pub headlight: Option<f32>,
}

impl Scene {
    /// Prepares a validated mesh. A texture that cannot be decoded is reported in `warnings` and
    /// the faces using it are drawn in their material colour (or, a normal map, with their face
    /// normals).
    pub fn new(mesh: &TriMesh, warnings: &mut Vec<String>) -> Result<Self, RenderError> {
        if mesh.faces.is_empty() {
            return Err(RenderError::NoFaces);
        }
        let mut textures = Vec::new();
        let mut paints = Vec::new();
        let mut normal_maps = Vec::new();
        for m in &mesh.materials {
            let mut load =
                |file: &Option<std::path::PathBuf>, instead: &str| match (file, &mesh.uvs) {
                    (Some(path), Some(_)) => match load_texture(path) {
                        Ok(t) => {
                            textures.push(t);
                            Some(textures.len() - 1)
                        }
                        Err(e) => {
                            warnings.push(format!("{e}; drawing material {} {instead}", m.name));
                            None
                        }
                    },
                    _ => None,
                };
            let textured = load(&m.diffuse_texture, "untextured");
            normal_maps.push(load(&m.normal_texture, "without its normal map"));
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
        normal_maps.push(None);
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
        let tangent_frames = normal_maps
            .iter()
            .any(Option::is_some)
            .then(|| {
                let normals = mesh.seamless_normals();
                let tangents = mesh.tangents(&normals)?;
                Some(TangentFrames { normals, tangents })
            })
            .flatten();
        Ok(Scene {
            positions: mesh.positions.clone(),
            faces: mesh.faces.clone(),
            uvs: mesh.uvs.clone(),
            colors: mesh.colors.clone(),
            textures,
            face_paint,
            paints,
            normal_maps,
            tangent_frames,
            normals,
            headlight: None,
        })
    }
}
