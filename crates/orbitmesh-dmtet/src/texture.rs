//! Textured output: a UV atlas for the refined surface (geom's) and the frames' colours baked
//! into it.

use image::RgbaImage;
use nalgebra::Vector3;
use orbitmesh_geom::texture::{PADDING, dilate, for_each_texel, texel_colour, unwrap};
use orbitmesh_geom::{Material, TriMesh};
use orbitmesh_render::raster::{NO_TRIANGLE, rasterize_cpu};
use orbitmesh_render::{OrbitImage, Projection, Scene, VisibilityBuffer};
use rayon::prelude::*;

use crate::DmtetError;

/// A mesh with texture coordinates (OBJ convention: v up) and its texture.
pub struct Textured {
    pub mesh: TriMesh,
    pub texture: RgbaImage,
}

/// Unwraps `mesh` (which must carry vertex colours) into a `size`² atlas and bakes its colours
/// into it: each texel blends the `frames` that see its point of the surface, the more head-on
/// the more weight, and texels no frame sees take the vertex colours interpolated across the face
/// as a renderer does. Frames hold texture finer than the surface's vertices. With `headlight`
/// (the ambient share of a light from the camera, as [`Scene::headlight`] has it) each frame's
/// colour is first divided by the light it was seen in, so the texture holds the colour lit
/// head-on and the same texture serves every view. Vertices on chart seams are split; the
/// triangles keep their order.
pub fn bake(
    mesh: &TriMesh,
    size: u32,
    frames: &[&OrbitImage],
    headlight: Option<f32>,
) -> Result<Textured, DmtetError> {
    let colours = mesh
        .colors
        .as_ref()
        .ok_or_else(|| DmtetError::Refine("baking a texture needs vertex colours".into()))?;
    let atlas = unwrap(mesh, size).map_err(|e| DmtetError::Refine(e.to_string()))?;
    let projected = ProjectedFrames::new(mesh, frames, headlight)?;
    let normals = mesh.vertex_normals();
    let blend = |b: [f32; 3], values: &[[f32; 3]; 3]| {
        [0, 1, 2].map(|k| b[0] * values[0][k] + b[1] * values[1][k] + b[2] * values[2][k])
    };
    let mut texture = RgbaImage::new(size, size);
    for face in &atlas.mesh.faces {
        let corner = face.map(|v| atlas.source[v as usize] as usize);
        let (c, p, n) = (
            corner.map(|i| colours[i]),
            corner.map(|i| mesh.positions[i]),
            corner.map(|i| normals[i]),
        );
        for_each_texel(size, size, face.map(|v| atlas.texel(v)), |x, y, b| {
            let colour = projected
                .colour(blend(b, &p), blend(b, &n))
                .unwrap_or_else(|| blend(b, &c));
            texture.put_pixel(x, y, texel_colour(colour));
        });
    }
    dilate(&mut texture, 2 * PADDING);
    Ok(Textured {
        mesh: atlas.mesh,
        texture,
    })
}

/// Attaches `texture_path` as the mesh's one material (the file is written by the caller).
pub fn with_material(mut mesh: TriMesh, texture_path: &std::path::Path) -> TriMesh {
    let mut material = Material::new("refined");
    material.diffuse = [1.0; 3];
    material.diffuse_texture = Some(texture_path.to_path_buf());
    mesh.materials = vec![material];
    mesh.face_materials = vec![0; mesh.faces.len()];
    mesh
}

/// One frame ready for projecting surface points into: its image, camera centre and view axis,
/// projection and depth buffer of the surface.
struct ProjectedFrame<'a> {
    image: &'a RgbaImage,
    eye: Vector3<f32>,
    axis: Vector3<f32>,
    projection: Projection,
    depth: VisibilityBuffer,
}

/// The frames that see the surface, and the ambient share of the light from their cameras.
struct ProjectedFrames<'a> {
    frames: Vec<ProjectedFrame<'a>>,
    headlight: Option<f32>,
}

/// A frame's weight grows as the cosine between the surface normal and the direction to its
/// camera to this power: the most head-on frames dominate (they resolve the most texture), while
/// neighbours still smooth the seams between them. On the oracle orbits' held-out views 4 beat
/// 0, 1 and 16.
const FACING_POWER: i32 = 4;

impl<'a> ProjectedFrames<'a> {
    fn new(
        mesh: &TriMesh,
        frames: &[&'a OrbitImage],
        headlight: Option<f32>,
    ) -> Result<Self, DmtetError> {
        let scene = Scene::new(mesh, &mut Vec::new())?;
        Ok(ProjectedFrames {
            frames: frames
                .par_iter()
                .map(|f| ProjectedFrame {
                    image: &f.image,
                    eye: f.camera.position().cast(),
                    axis: f
                        .camera
                        .camera_to_world
                        .fixed_view::<3, 1>(0, 2)
                        .into_owned()
                        .cast(),
                    projection: Projection::new(&f.camera),
                    depth: rasterize_cpu(&scene, &f.camera),
                })
                .collect(),
            headlight,
        })
    }

    /// The frames' blended colour (0..1) at `point` on the surface with `normal`, or None where
    /// no frame sees it.
    fn colour(&self, point: [f32; 3], normal: [f32; 3]) -> Option<[f32; 3]> {
        let p = Vector3::from(point);
        let n = Vector3::from(normal).try_normalize(1e-12)?;
        let (mut sum, mut total) = ([0.0f32; 3], 0.0f32);
        for frame in &self.frames {
            let facing = n.dot(&(frame.eye - p).normalize());
            if facing <= 0.0 {
                continue;
            }
            let Some(([x, y], z)) = frame.projection.project_view_depth(point) else {
                continue;
            };
            // The pixel whose centre is nearest (centres are on integers).
            let (px, py) = ((x + 0.5).floor(), (y + 0.5).floor());
            if px < 0.0
                || py < 0.0
                || px >= frame.depth.width as f32
                || py >= frame.depth.height as f32
            {
                continue;
            }
            let i = py as usize * frame.depth.width as usize + px as usize;
            // Visible where the depth buffer's surface at its pixel is the point itself: the
            // slack is the depth the surface can change across a pixel, at this obliqueness.
            let pixel = z * frame.projection.pixel_footprint();
            let slack = 0.005 + 2.0 * pixel / facing.max(0.25);
            if frame.depth.triangle[i] == NO_TRIANGLE || frame.depth.depth[i] < z - slack {
                continue;
            }
            let Some((rgb, alpha)) = sample(frame.image, x, y) else {
                continue;
            };
            let weight = facing.powi(FACING_POWER) * alpha;
            // Kept off zero: a face seen edge-on says little about its colour.
            let light = self
                .headlight
                .map_or(1.0, |a| (a + (1.0 - a) * n.dot(&frame.axis).abs()).max(0.1));
            (0..3).for_each(|k| sum[k] += weight * rgb[k] / light);
            total += weight;
        }
        (total > 0.0).then(|| sum.map(|v| v / total))
    }
}

/// Bilinear colour (0..1) and coverage of `image` at pixel coordinates (x, y) with pixel centres
/// on integers, the colours weighted by alpha so transparent neighbours do not darken an edge;
/// None where the frame shows less object than background there.
fn sample(image: &RgbaImage, x: f32, y: f32) -> Option<([f32; 3], f32)> {
    let (w, h) = (i64::from(image.width()), i64::from(image.height()));
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let (mut rgb, mut alpha) = ([0.0f32; 3], 0.0f32);
    for (dx, dy, weight) in [
        (0, 0, (1.0 - fx) * (1.0 - fy)),
        (1, 0, fx * (1.0 - fy)),
        (0, 1, (1.0 - fx) * fy),
        (1, 1, fx * fy),
    ] {
        let (px, py) = (
            (x0 as i64 + dx).clamp(0, w - 1),
            (y0 as i64 + dy).clamp(0, h - 1),
        );
        let c = image.get_pixel(px as u32, py as u32);
        let a = weight * f32::from(c[3]) / 255.0;
        (0..3).for_each(|k| rgb[k] += a * f32::from(c[k]) / 255.0);
        alpha += a;
    }
    (alpha >= 0.5).then(|| (rgb.map(|v| v / alpha), alpha))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgba;
    use orbitmesh_geom::shapes::uv_sphere;
    use orbitmesh_geom::{read_mesh, write_mesh};

    fn coloured_sphere() -> TriMesh {
        let mut mesh = uv_sphere(0.4, 12, 24);
        let colours = mesh
            .positions
            .iter()
            .map(|p| [0.5 + p[0], 0.5 + p[1], 0.5 + p[2]])
            .collect();
        mesh.colors = Some(colours);
        mesh
    }

    #[test]
    fn the_baked_texture_shows_each_faces_colour_at_its_uv_and_round_trips_through_obj() {
        let mesh = coloured_sphere();
        let baked = bake(&mesh, 256, &[], None).unwrap();
        assert_eq!(baked.mesh.faces.len(), mesh.faces.len());
        assert_eq!(baked.texture.dimensions(), (256, 256));
        let uvs = baked.mesh.uvs.clone().unwrap();
        assert!(uvs.iter().flatten().all(|t| (0.0..=1.0).contains(t)));
        let colours = baked.mesh.colors.clone().unwrap();
        let mut worst = 0.0f32;
        for f in &baked.mesh.faces {
            let uv = [0, 1].map(|k| f.iter().map(|&v| uvs[v as usize][k]).sum::<f32>() / 3.0);
            let want =
                [0, 1, 2].map(|k| f.iter().map(|&v| colours[v as usize][k]).sum::<f32>() / 3.0);
            let (x, y) = ((uv[0] * 256.0) as u32, ((1.0 - uv[1]) * 256.0) as u32);
            let got = baked.texture.get_pixel(x.min(255), y.min(255));
            for k in 0..3 {
                worst = worst.max((f32::from(got[k]) / 255.0 - want[k]).abs());
            }
        }
        assert!(worst < 0.03, "texel vs interpolated colour: {worst}");

        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("texture.png");
        baked.texture.save(&png).unwrap();
        let obj = dir.path().join("model.obj");
        write_mesh(&obj, &with_material(baked.mesh.clone(), &png)).unwrap();
        let back = read_mesh(&obj).unwrap();
        assert!(back.warnings.is_empty(), "{:?}", back.warnings);
        assert_eq!(back.mesh.faces.len(), mesh.faces.len());
        assert_eq!(back.mesh.uvs.as_ref().map(Vec::len), Some(uvs.len()));
        assert!(
            back.mesh.materials[0]
                .diffuse_texture
                .as_deref()
                .is_some_and(|p| p.is_file()),
            "the MTL names the texture beside the OBJ"
        );
    }

    #[test]
    fn frames_are_projected_where_they_see_the_surface_and_vertex_colours_fill_the_rest() {
        use orbitmesh_render::{Intrinsics, OrbitView};
        let mut mesh = uv_sphere(0.4, 24, 48);
        mesh.colors = Some(vec![[0.5; 3]; mesh.positions.len()]);
        // One red frame from +x and one blue frame from −x: at 2 units a camera sees the points
        // whose normal has x beyond 0.2 (towards it), so a band around x = 0 is seen by neither.
        let frame = |azimuth_deg: f64, rgb: [u8; 3]| OrbitImage {
            path: format!("{azimuth_deg}.png").into(),
            camera: OrbitView {
                elevation_deg: 0.0,
                azimuth_deg,
                radius: 2.0,
            }
            .camera(Intrinsics::from_fov(40.0, 64, 64)),
            image: RgbaImage::from_pixel(64, 64, Rgba([rgb[0], rgb[1], rgb[2], 255])),
            has_alpha: true,
        };
        let (red, blue) = (frame(0.0, [255, 0, 0]), frame(180.0, [0, 0, 255]));
        let baked = bake(&mesh, 512, &[&red, &blue], None).unwrap();
        let uvs = baked.mesh.uvs.clone().unwrap();
        let mut checked = [0; 3];
        for f in &baked.mesh.faces {
            let mean = |values: &dyn Fn(usize) -> f32| {
                f.iter().map(|&v| values(v as usize)).sum::<f32>() / 3.0
            };
            let x = mean(&|v| baked.mesh.positions[v][0]) / 0.4;
            let uv = [0, 1].map(|k| mean(&|v| uvs[v][k]));
            let (tx, ty) = ((uv[0] * 512.0) as u32, ((1.0 - uv[1]) * 512.0) as u32);
            let got = baked.texture.get_pixel(tx.min(511), ty.min(511)).0;
            let want = if x > 0.5 {
                [255, 0, 0]
            } else if x < -0.5 {
                [0, 0, 255]
            } else if x.abs() < 0.1 {
                [128, 128, 128]
            } else {
                continue;
            };
            let k = if x > 0.5 {
                0
            } else if x < -0.5 {
                1
            } else {
                2
            };
            checked[k] += 1;
            let off = (0..3).map(|k| got[k].abs_diff(want[k])).max().unwrap_or(0);
            assert!(off <= 1, "face at x = {x:.2}: {got:?}, expected {want:?}");
        }
        assert!(checked.iter().all(|&n| n > 20), "{checked:?}");
    }

    #[test]
    fn a_headlight_in_the_frames_is_divided_out_of_the_texture() {
        let mut mesh = uv_sphere(0.4, 24, 48);
        mesh.colors = Some(vec![[0.6; 3]; mesh.positions.len()]);
        let mut scene = Scene::new(&mesh, &mut Vec::new()).unwrap();
        scene.headlight = Some(0.25);
        let orbit = orbitmesh_render::rendered_scene_orbit(&scene, 8, 96);
        let frames: Vec<&OrbitImage> = orbit.frames.iter().collect();
        // The texel at each face's centre, up to 55° of latitude (the orbit sees it all).
        let texels = |headlight: Option<f32>| {
            let baked = bake(&mesh, 256, &frames, headlight).unwrap();
            let uvs = baked.mesh.uvs.clone().unwrap();
            let mut values = Vec::new();
            for f in &baked.mesh.faces {
                let centre = |k: usize| {
                    f.iter()
                        .map(|&v| baked.mesh.positions[v as usize][k])
                        .sum::<f32>()
                        / 3.0
                };
                if centre(2).abs() > 0.4 * 55f32.to_radians().sin() {
                    continue;
                }
                let uv = [0, 1].map(|k| f.iter().map(|&v| uvs[v as usize][k]).sum::<f32>() / 3.0);
                let (x, y) = ((uv[0] * 256.0) as u32, ((1.0 - uv[1]) * 256.0) as u32);
                values.push(f32::from(baked.texture.get_pixel(x.min(255), y.min(255))[0]) / 255.0);
            }
            let lo = values.iter().copied().fold(f32::MAX, f32::min);
            let hi = values.iter().copied().fold(f32::MIN, f32::max);
            (lo, hi)
        };
        let (lo, hi) = texels(Some(0.25));
        assert!(
            lo > 0.55 && hi < 0.65,
            "divided by the light: {lo}..{hi}, the colour is 0.6"
        );
        let (lo, _) = texels(None);
        assert!(lo < 0.5, "as seen, oblique faces come out dark: {lo}");
    }

    #[test]
    fn a_mesh_without_colours_is_refused() {
        let mut mesh = coloured_sphere();
        mesh.colors = None;
        assert!(bake(&mesh, 64, &[], None).is_err());
    }
}
