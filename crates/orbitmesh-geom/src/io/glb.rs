//! Binary glTF 2.0 (GLB) for game engines: one file with the mesh, its normals, UVs, vertex
//! colours and embedded textures, turned Y up as glTF requires. Built with gltf-json's types and
//! gltf's GLB container rather than hand-written JSON.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use gltf::json::{self, validation::Checked::Valid, validation::USize64};

use super::write_atomic;
use crate::error::{GeomError, Result};
use crate::mesh::TriMesh;

/// Accumulates the binary chunk, each view 4-byte aligned.
struct Bin {
    bytes: Vec<u8>,
}

impl Bin {
    fn push(
        &mut self,
        root: &mut json::Root,
        data: &[u8],
        target: Option<json::buffer::Target>,
    ) -> json::Index<json::buffer::View> {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
        let offset = self.bytes.len();
        self.bytes.extend_from_slice(data);
        root.push(json::buffer::View {
            buffer: json::Index::new(0),
            byte_length: USize64::from(data.len()),
            byte_offset: Some(USize64::from(offset)),
            byte_stride: None,
            extensions: Default::default(),
            extras: Default::default(),
            name: None,
            target: target.map(Valid),
        })
    }
}

fn accessor(
    root: &mut json::Root,
    view: json::Index<json::buffer::View>,
    count: usize,
    component: json::accessor::ComponentType,
    kind: json::accessor::Type,
    bounds: Option<([f32; 3], [f32; 3])>,
) -> json::Index<json::Accessor> {
    root.push(json::Accessor {
        buffer_view: Some(view),
        byte_offset: Some(USize64(0)),
        count: USize64::from(count),
        component_type: Valid(json::accessor::GenericComponentType(component)),
        extensions: Default::default(),
        extras: Default::default(),
        type_: Valid(kind),
        min: bounds.map(|(lo, _)| json::Value::from(lo.to_vec())),
        max: bounds.map(|(_, hi)| json::Value::from(hi.to_vec())),
        name: None,
        normalized: false,
        sparse: None,
    })
}

fn floats<const N: usize>(v: &[[f32; N]]) -> Vec<u8> {
    v.iter().flatten().flat_map(|f| f.to_le_bytes()).collect()
}

/// How [`write_glb_lods`] names and dresses a file for an engine.
#[derive(Debug, Clone, PartialEq)]
pub struct GlbOptions {
    /// The object's name: its node's and its mesh's; with several levels of detail, level `i` is
    /// the node `<name>_LOD<i>` (the naming Unity's and Unreal's importers make LOD groups of).
    pub name: String,
    /// Metres per unit.
    pub scale: f32,
    /// The materials' PBR roughness; metallic is 0 (a scan's colour is a dielectric's).
    pub roughness: f32,
}

impl Default for GlbOptions {
    fn default() -> Self {
        GlbOptions {
            name: "orbitmesh".into(),
            scale: 1.0,
            roughness: 1.0,
        }
    }
}

/// Writes `mesh` (Z up, in the object frame) as GLB, Y up, scaled by `scale` (metres per unit).
pub fn write_glb(path: &Path, mesh: &TriMesh, scale: f32) -> Result<()> {
    let options = GlbOptions {
        scale,
        ..Default::default()
    };
    write_glb_lods(path, std::slice::from_ref(mesh), &options)
}

/// Screen coverage below which level `i` of `levels` gives way to the next (MSFT_lod's hint):
/// halving faces suit halving on-screen size; the last level stays down to nothing.
fn screen_coverage(i: usize, levels: usize) -> f64 {
    if i + 1 == levels {
        0.0
    } else {
        0.5f64.powi(i as i32 + 1)
    }
}

/// Writes levels of detail of one object (Z up, in the object frame; the same materials, finest
/// first) as one GLB, Y up. One level is one node named `options.name`; several are the nodes
/// `<name>_LOD0`, `<name>_LOD1`, …: LOD0 under a node named `<name>` in the scene, naming the
/// others through the MSFT_lod extension with their screen-coverage hints
/// (`MSFT_screencoverage`), for viewers that switch levels themselves.
pub fn write_glb_lods(path: &Path, lods: &[TriMesh], options: &GlbOptions) -> Result<()> {
    let Some(first) = lods.first() else {
        return Err(GeomError::Invalid {
            path: path.to_path_buf(),
            message: "no mesh to write".into(),
        });
    };
    for mesh in lods {
        mesh.validate(path)?;
        if mesh.materials.len() != first.materials.len() {
            return Err(GeomError::Invalid {
                path: path.to_path_buf(),
                message: "levels of detail must share their materials".into(),
            });
        }
    }
    let mut root = json::Root::default();
    root.asset.generator = Some(format!("orbitmesh {}", env!("CARGO_PKG_VERSION")));
    let mut bin = Bin { bytes: Vec::new() };

    // One material per orbitmesh material, shared by every level; textures embedded as they are
    // (PNG or JPEG) or re-encoded to PNG.
    let mut materials = Vec::new();
    for m in &first.materials {
        let mut embed = |file: &Option<std::path::PathBuf>| match (file, &first.uvs) {
            (Some(file), Some(_)) => embed_image(&mut root, &mut bin, file).map(Some),
            _ => Ok(None),
        };
        let texture = embed(&m.diffuse_texture)?;
        let normal_texture = embed(&m.normal_texture)?;
        let [r, g, b] = m.diffuse;
        materials.push(root.push(json::Material {
            name: Some(m.name.clone()),
            double_sided: true,
            normal_texture: normal_texture.map(|index| json::material::NormalTexture {
                index,
                scale: 1.0,
                tex_coord: 0,
                extensions: Default::default(),
                extras: Default::default(),
            }),
            pbr_metallic_roughness: json::material::PbrMetallicRoughness {
                base_color_factor: json::material::PbrBaseColorFactor([r, g, b, 1.0]),
                base_color_texture: texture.map(|index| json::texture::Info {
                    index,
                    tex_coord: 0,
                    extensions: Default::default(),
                    extras: Default::default(),
                }),
                metallic_factor: json::material::StrengthFactor(0.0),
                roughness_factor: json::material::StrengthFactor(options.roughness),
                ..Default::default()
            },
            ..Default::default()
        }));
    }

    let node = |root: &mut json::Root, name: String, mesh, children| {
        root.push(json::Node {
            mesh,
            name: Some(name),
            children,
            ..Default::default()
        })
    };
    let top = if lods.len() == 1 {
        let mesh = push_mesh(
            &mut root,
            &mut bin,
            first,
            &materials,
            options,
            &options.name,
        );
        node(&mut root, options.name.clone(), Some(mesh), None)
    } else {
        let levels: Vec<json::Index<json::Node>> = lods
            .iter()
            .enumerate()
            .map(|(i, lod)| {
                let name = format!("{}_LOD{i}", options.name);
                let mesh = push_mesh(&mut root, &mut bin, lod, &materials, options, &name);
                node(&mut root, name, Some(mesh), None)
            })
            .collect();
        let lod0 = &mut root.nodes[levels[0].value()];
        let ids: Vec<usize> = levels[1..].iter().map(|n| n.value()).collect();
        let mut others = serde_json::Map::new();
        others.insert("MSFT_lod".into(), serde_json::json!({ "ids": ids }));
        lod0.extensions = Some(json::extensions::scene::Node { others });
        let coverage: Vec<f64> = (0..lods.len())
            .map(|i| screen_coverage(i, lods.len()))
            .collect();
        lod0.extras = serde_json::value::to_raw_value(
            &serde_json::json!({ "MSFT_screencoverage": coverage }),
        )
        .ok();
        root.extensions_used.push("MSFT_lod".into());
        // The coarser levels hang from no node: MSFT_lod names them as LOD0's stand-ins, and a
        // viewer that does not read it draws LOD0 alone.
        node(&mut root, options.name.clone(), None, Some(vec![levels[0]]))
    };
    let scene = root.push(json::Scene {
        extensions: Default::default(),
        extras: Default::default(),
        name: None,
        nodes: vec![top],
    });
    root.scene = Some(scene);
    while !bin.bytes.len().is_multiple_of(4) {
        bin.bytes.push(0);
    }
    root.push(json::Buffer {
        byte_length: USize64::from(bin.bytes.len()),
        extensions: Default::default(),
        extras: Default::default(),
        name: None,
        uri: None,
    });

    let mut text = json::serialize::to_vec(&root).map_err(|e| GeomError::Invalid {
        path: path.to_path_buf(),
        message: format!("glTF serialisation failed: {e}"),
    })?;
    // The JSON chunk is padded with spaces to 4 bytes.
    while !text.len().is_multiple_of(4) {
        text.push(b' ');
    }
    let glb = gltf::binary::Glb {
        header: gltf::binary::Header {
            magic: *b"glTF",
            version: 2,
            length: (12 + 8 + text.len() + 8 + bin.bytes.len()) as u32,
        },
        json: Cow::Owned(text),
        bin: Some(Cow::Owned(bin.bytes)),
    };
    let bytes = glb.to_vec().map_err(|e| GeomError::Invalid {
        path: path.to_path_buf(),
        message: format!("GLB container: {e}"),
    })?;
    write_atomic(path, |w| std::io::Write::write_all(w, &bytes))
}

/// Adds `mesh` (Z up) to `root` as a glTF mesh named `name`, Y up: its vertex attributes and one
/// primitive per material it uses.
fn push_mesh(
    root: &mut json::Root,
    bin: &mut Bin,
    mesh: &TriMesh,
    materials: &[json::Index<json::Material>],
    options: &GlbOptions,
    name: &str,
) -> json::Index<json::Mesh> {
    let scale = options.scale;
    // Z up → Y up: −90° about X, (x, y, z) → (x, z, −y).
    let positions: Vec<[f32; 3]> = mesh
        .positions
        .iter()
        .map(|p| [p[0] * scale, p[2] * scale, -p[1] * scale])
        .collect();
    // The same turn for the normals; glTF wants unit normals, so vertices without one get +Y.
    let seamless = mesh.seamless_normals();
    let normals: Vec<[f32; 3]> = seamless
        .iter()
        .copied()
        .map(|n| {
            if n == [0.0; 3] {
                [0.0, 1.0, 0.0]
            } else {
                [n[0], n[2], -n[1]]
            }
        })
        .collect();
    let mut lo = [f32::INFINITY; 3];
    let mut hi = [f32::NEG_INFINITY; 3];
    for p in &positions {
        for k in 0..3 {
            lo[k] = lo[k].min(p[k]);
            hi[k] = hi[k].max(p[k]);
        }
    }

    use json::accessor::{ComponentType as C, Type as T};
    use json::buffer::Target;
    let n = positions.len();
    let view = bin.push(root, &floats(&positions), Some(Target::ArrayBuffer));
    let pos = accessor(root, view, n, C::F32, T::Vec3, Some((lo, hi)));
    let view = bin.push(root, &floats(&normals), Some(Target::ArrayBuffer));
    let nrm = accessor(root, view, n, C::F32, T::Vec3, None);
    let mut attributes = BTreeMap::new();
    attributes.insert(Valid(json::mesh::Semantic::Positions), pos);
    attributes.insert(Valid(json::mesh::Semantic::Normals), nrm);
    if let Some(uvs) = &mesh.uvs {
        // glTF's texture origin is the top-left corner, OBJ's the bottom-left.
        let flipped: Vec<[f32; 2]> = uvs.iter().map(|t| [t[0], 1.0 - t[1]]).collect();
        let view = bin.push(root, &floats(&flipped), Some(Target::ArrayBuffer));
        let acc = accessor(root, view, n, C::F32, T::Vec2, None);
        attributes.insert(Valid(json::mesh::Semantic::TexCoords(0)), acc);
    }
    // A normal map is read in the tangent space it was baked in: MikkTSpace's, from the same
    // UVs and normals, turned Y up like them (the bitangent's sign is unchanged by a turn).
    let normal_mapped = mesh.materials.iter().any(|m| m.normal_texture.is_some());
    if let Some(tangents) = mesh.tangents(&seamless).filter(|_| normal_mapped) {
        let turned: Vec<[f32; 4]> = tangents.iter().map(|t| [t[0], t[2], -t[1], t[3]]).collect();
        let view = bin.push(root, &floats(&turned), Some(Target::ArrayBuffer));
        let acc = accessor(root, view, n, C::F32, T::Vec4, None);
        attributes.insert(Valid(json::mesh::Semantic::Tangents), acc);
    }
    if let Some(colors) = &mesh.colors {
        let view = bin.push(root, &floats(colors), Some(Target::ArrayBuffer));
        let acc = accessor(root, view, n, C::F32, T::Vec3, None);
        attributes.insert(Valid(json::mesh::Semantic::Colors(0)), acc);
    }

    // One primitive per material used (or one for all faces).
    let groups: Vec<(Option<usize>, Vec<[u32; 3]>)> = if mesh.face_materials.is_empty() {
        vec![(None, mesh.faces.clone())]
    } else {
        (0..mesh.materials.len())
            .map(|m| {
                let faces = mesh
                    .faces
                    .iter()
                    .zip(&mesh.face_materials)
                    .filter(|(_, fm)| **fm as usize == m)
                    .map(|(f, _)| *f)
                    .collect();
                (Some(m), faces)
            })
            .filter(|(_, f): &(_, Vec<_>)| !f.is_empty())
            .collect()
    };
    let mut primitives = Vec::new();
    for (material, faces) in groups {
        let indices: Vec<u8> = faces
            .iter()
            .flatten()
            .flat_map(|i| i.to_le_bytes())
            .collect();
        let view = bin.push(root, &indices, Some(Target::ElementArrayBuffer));
        let idx = accessor(root, view, faces.len() * 3, C::U32, T::Scalar, None);
        primitives.push(json::mesh::Primitive {
            attributes: attributes.clone(),
            extensions: Default::default(),
            extras: Default::default(),
            indices: Some(idx),
            material: material.map(|m| materials[m]),
            mode: Valid(json::mesh::Mode::Triangles),
            targets: None,
        });
    }
    root.push(json::Mesh {
        extensions: Default::default(),
        extras: Default::default(),
        name: Some(name.to_string()),
        primitives,
        weights: None,
    })
}

/// Refuses what the gltf crates panic on (both found by the fuzzer): a primitive whose attributes
/// name an accessor the file does not have (gltf-json 1.4.1's validation indexes the accessors by
/// the POSITION attribute before checking it, mesh.rs:151), and indices that are not unsigned
/// integers.
fn accessors_exist(bytes: &[u8]) -> std::result::Result<(), String> {
    let glb = gltf::binary::Glb::from_slice(bytes).map_err(|e| e.to_string())?;
    let root: json::Root = json::deserialize::from_slice(&glb.json).map_err(|e| e.to_string())?;
    let count = root.accessors.len();
    for (m, mesh) in root.meshes.iter().enumerate() {
        for (p, primitive) in mesh.primitives.iter().enumerate() {
            let named = primitive
                .attributes
                .values()
                .chain(primitive.indices.as_ref());
            if let Some(bad) = named.map(|a| a.value()).find(|&a| a >= count) {
                return Err(format!(
                    "mesh {m} primitive {p} names accessor {bad}, but there are {count}"
                ));
            }
            // gltf 1.4.1 reads indices, colours and texture coordinates of any other type as
            // unreachable code (mesh/mod.rs:377, 396, 430).
            use json::accessor::{ComponentType as C, GenericComponentType, Type};
            use json::mesh::Semantic;
            let of = |a: &json::Index<json::Accessor>| {
                let accessor = &root.accessors[a.value()];
                let component = match accessor.component_type {
                    Valid(GenericComponentType(c)) => Some(c),
                    _ => None,
                };
                let kind = match accessor.type_ {
                    Valid(t) => Some(t),
                    _ => None,
                };
                (component, kind)
            };
            let mut typed = primitive
                .indices
                .iter()
                .map(|a| ("indices", matches!(of(a).0, Some(C::U8 | C::U16 | C::U32))))
                .collect::<Vec<_>>();
            for (semantic, a) in &primitive.attributes {
                let (component, kind) = of(a);
                let small_or_float = matches!(component, Some(C::U8 | C::U16 | C::F32));
                match semantic {
                    Valid(Semantic::Colors(_)) => typed.push((
                        "colours",
                        small_or_float && matches!(kind, Some(Type::Vec3 | Type::Vec4)),
                    )),
                    Valid(Semantic::TexCoords(_)) => {
                        typed.push(("texture coordinates", small_or_float))
                    }
                    _ => {}
                }
            }
            if let Some((what, _)) = typed.iter().find(|(_, ok)| !ok) {
                return Err(format!(
                    "mesh {m} primitive {p}: its {what} are not of a type glTF allows"
                ));
            }
        }
    }
    Ok(())
}

/// Reads the triangles of a GLB's default scene (node transforms applied), turned from glTF's
/// Y up into the Z-up object frame, with vertex colours and UVs when every primitive has them.
/// Materials and textures are not read.
pub(super) fn read_glb(path: &Path, bytes: &[u8]) -> Result<TriMesh> {
    let err = |m: String| GeomError::parse(path, "GLB", m);
    accessors_exist(bytes).map_err(err)?;
    let gltf = gltf::Gltf::from_slice(bytes).map_err(|e| err(e.to_string()))?;
    let blob = gltf.blob.as_deref();
    let scene = gltf
        .default_scene()
        .or_else(|| gltf.scenes().next())
        .ok_or_else(|| err("no scene".into()))?;
    let mut mesh = TriMesh::default();
    let (mut uvs, mut colors) = (Some(Vec::new()), Some(Vec::new()));
    let mut stack: Vec<(gltf::Node, nalgebra::Matrix4<f32>)> = scene
        .nodes()
        .map(|n| (n, nalgebra::Matrix4::identity()))
        .collect();
    while let Some((node, parent)) = stack.pop() {
        let local = nalgebra::Matrix4::from(node.transform().matrix());
        let world = parent * local;
        stack.extend(node.children().map(|c| (c, world)));
        let Some(m) = node.mesh() else { continue };
        for prim in m.primitives() {
            if prim.mode() != gltf::mesh::Mode::Triangles {
                continue;
            }
            let reader = prim.reader(|b| match b.source() {
                gltf::buffer::Source::Bin => blob,
                gltf::buffer::Source::Uri(_) => None,
            });
            let positions: Vec<[f32; 3]> = reader
                .read_positions()
                .ok_or_else(|| {
                    err("a primitive without positions (or with external buffers)".into())
                })?
                .collect();
            let base = mesh.positions.len() as u32;
            for p in &positions {
                let q = world.transform_point(&nalgebra::Point3::new(p[0], p[1], p[2]));
                // Y up → Z up: (x, y, z) → (x, −z, y).
                mesh.positions.push([q.x, -q.z, q.y]);
            }
            let indices: Vec<u32> = match reader.read_indices() {
                Some(i) => i.into_u32().collect(),
                None => (0..positions.len() as u32).collect(),
            };
            mesh.faces.extend(
                indices
                    .chunks_exact(3)
                    .map(|t| [t[0] + base, t[1] + base, t[2] + base]),
            );
            uvs = uvs.and_then(|mut all: Vec<[f32; 2]>| {
                let t = reader.read_tex_coords(0)?.into_f32();
                all.extend(t.map(|[u, v]| [u, 1.0 - v]));
                Some(all)
            });
            colors = colors.and_then(|mut all: Vec<[f32; 3]>| {
                all.extend(reader.read_colors(0)?.into_rgb_f32());
                Some(all)
            });
        }
    }
    let n = mesh.positions.len();
    mesh.uvs = uvs.filter(|u| u.len() == n && n > 0);
    mesh.colors = colors.filter(|c| c.len() == n && n > 0);
    Ok(mesh)
}

fn embed_image(
    root: &mut json::Root,
    bin: &mut Bin,
    file: &Path,
) -> Result<json::Index<json::Texture>> {
    let raw = std::fs::read(file).map_err(|e| GeomError::io(file, e))?;
    let (bytes, mime) = if raw.starts_with(b"\x89PNG") {
        (raw, "image/png")
    } else if raw.starts_with(&[0xff, 0xd8]) {
        (raw, "image/jpeg")
    } else {
        return Err(GeomError::Invalid {
            path: file.to_path_buf(),
            message: "textures must be PNG or JPEG to embed in GLB".into(),
        });
    };
    let view = bin.push(root, &bytes, None);
    let image = root.push(json::Image {
        buffer_view: Some(view),
        mime_type: Some(json::image::MimeType(mime.into())),
        name: None,
        uri: None,
        extensions: Default::default(),
        extras: Default::default(),
    });
    let sampler = root.push(json::texture::Sampler {
        mag_filter: Some(Valid(json::texture::MagFilter::Linear)),
        min_filter: Some(Valid(json::texture::MinFilter::LinearMipmapLinear)),
        ..Default::default()
    });
    Ok(root.push(json::Texture {
        name: None,
        sampler: Some(sampler),
        source: image,
        extensions: Default::default(),
        extras: Default::default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::Material;

    /// The fuzzer's finds. One flipped bit in the JSON chunk ("accessors" → "accessorr") leaves
    /// the primitives naming accessors that are not there, on which gltf-json's validation
    /// panicked; it is an error naming the file.
    #[test]
    fn what_the_gltf_crates_panic_on_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tri.glb");
        let tri = TriMesh::new(
            vec![[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
            vec![[0, 1, 2]],
        );
        write_glb(&path, &tri, 1.0).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes
            .windows(11)
            .position(|w| w == b"\"accessors\"")
            .unwrap();
        bytes[at + 9] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = crate::read_mesh(&path).unwrap_err().to_string();
        assert!(
            err.contains("tri.glb") && err.contains("accessor 0"),
            "{err}"
        );

        // Its other find: indices said to be floats (5126) instead of u32 (5125).
        write_glb(&path, &tri, 1.0).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes
            .windows(20)
            .position(|w| w == b"\"componentType\":5125")
            .unwrap();
        bytes[at + 19] = b'6';
        std::fs::write(&path, &bytes).unwrap();
        let err = crate::read_mesh(&path).unwrap_err().to_string();
        assert!(
            err.contains("indices are not of a type glTF allows"),
            "{err}"
        );
    }

    #[test]
    fn glb_holds_the_mesh_y_up_with_its_texture() {
        let dir = tempfile::tempdir().unwrap();
        let tex = dir.path().join("t.png");
        std::fs::write(&tex, b"\x89PNG\r\n\x1a\nnot really decoded").unwrap();
        let mut quad = TriMesh::new(
            vec![
                [0.0, 0.0, 0.0],
                [1.0, 0.0, 0.0],
                [1.0, 0.0, 1.0],
                [0.0, 0.0, 1.0],
            ],
            vec![[0, 1, 2], [0, 2, 3]],
        );
        quad.uvs = Some(vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]);
        quad.materials = vec![Material {
            diffuse_texture: Some(tex.clone()),
            normal_texture: Some(tex),
            ..Material::new("skin")
        }];
        quad.face_materials = vec![0, 0];
        let path = dir.path().join("quad.glb");
        write_glb(&path, &quad, 2.0).unwrap();

        let bytes = std::fs::read(&path).unwrap();
        // Read back as orbitmesh reads any mesh: Z up again, at the written scale.
        let back = crate::read_mesh(&path).unwrap().mesh;
        assert_eq!(back.faces, quad.faces);
        assert_eq!(back.uvs, quad.uvs);
        for (a, b) in back.positions.iter().zip(&quad.positions) {
            assert!(
                (0..3).all(|k| (a[k] - 2.0 * b[k]).abs() < 1e-6),
                "{a:?} vs {b:?}"
            );
        }
        let gltf = gltf::Gltf::from_slice(&bytes).unwrap();
        let blob = gltf.blob.as_deref().unwrap();
        let mesh = gltf.meshes().next().unwrap();
        let prim = mesh.primitives().next().unwrap();
        let reader = prim.reader(|_| Some(blob));
        let positions: Vec<[f32; 3]> = reader.read_positions().unwrap().collect();
        // (x, y, z) → (x, z, −y), times the scale: the quad's top edge (z = 1) is now y = 2.
        assert_eq!(positions[2], [2.0, 2.0, 0.0]);
        let uvs: Vec<[f32; 2]> = reader.read_tex_coords(0).unwrap().into_f32().collect();
        assert_eq!(uvs[3], [0.0, 0.0]);
        let normals: Vec<[f32; 3]> = reader.read_normals().unwrap().collect();
        assert!(normals.iter().all(|n| (n[2].abs() - 1.0).abs() < 1e-6));
        let indices: Vec<u32> = reader.read_indices().unwrap().into_u32().collect();
        assert_eq!(indices, vec![0, 1, 2, 0, 2, 3]);
        // u runs along x and v up z (Z up): the tangent is +x, and the bitangent, the turned
        // normal (0, 0, 1) × +x = +y times w, is up the image (+v) with w = +1.
        let tangents: Vec<[f32; 4]> = reader.read_tangents().unwrap().collect();
        for t in &tangents {
            assert!((t[0] - 1.0).abs() < 1e-6 && t[1].abs() < 1e-6 && t[2].abs() < 1e-6);
            assert_eq!(t[3], 1.0, "{t:?}");
        }
        let image = gltf.images().next().unwrap();
        match image.source() {
            gltf::image::Source::View { view, mime_type } => {
                assert_eq!(mime_type, "image/png");
                let start = view.offset();
                assert!(blob[start..start + view.length()].starts_with(b"\x89PNG"));
            }
            other => panic!("texture not embedded: {other:?}"),
        }
        let material = prim.material();
        assert!(
            material
                .pbr_metallic_roughness()
                .base_color_texture()
                .is_some()
        );
        assert!(material.normal_texture().is_some());
    }
}
