//! An orbit on disk: a folder of frames and the `transforms.json` that poses them (written by
//! `orbitmesh render` or any instant-ngp/nerfstudio tool).

use std::path::{Path, PathBuf};

use image::RgbaImage;

use crate::RenderError;
use crate::camera::{Camera, read_transforms_json};

pub struct OrbitImage {
    pub path: PathBuf,
    pub camera: Camera,
    pub image: RgbaImage,
    /// Whether the file carried an alpha channel (a silhouette) at all.
    pub has_alpha: bool,
}

pub struct Orbit {
    pub dir: PathBuf,
    pub frames: Vec<OrbitImage>,
}

fn invalid(path: &Path, message: impl Into<String>) -> RenderError {
    RenderError::Invalid {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Reads `dir/transforms.json` and every frame it names (paths relative to `dir`; a missing
/// extension is tried as .png). Frames must share one size, the size the file declares.
pub fn read_orbit(dir: &Path) -> Result<Orbit, RenderError> {
    let transforms = dir.join("transforms.json");
    if !transforms.is_file() {
        return Err(invalid(dir, "no transforms.json in this folder"));
    }
    let posed = read_transforms_json(&transforms, None)?;
    if posed.is_empty() {
        return Err(invalid(&transforms, "no frames"));
    }
    let mut frames = Vec::with_capacity(posed.len());
    for (k, f) in posed.into_iter().enumerate() {
        let m = f.camera.camera_to_world;
        if m.iter().any(|v| !v.is_finite()) {
            return Err(invalid(
                &transforms,
                format!("frame {k} has a non-finite transform_matrix"),
            ));
        }
        let mut path = dir.join(&f.file);
        if path.extension().is_none() && !path.exists() {
            path.set_extension("png");
        }
        let decoded = image::open(&path)
            .map_err(|e| invalid(&path, format!("cannot read the frame: {e}")))?;
        let has_alpha = decoded.color().has_alpha();
        let image = decoded.to_rgba8();
        let k_in = f.camera.intrinsics;
        if image.dimensions() != (k_in.width, k_in.height) {
            return Err(invalid(
                &path,
                format!(
                    "the frame is {}×{}, but transforms.json says {}×{}",
                    image.width(),
                    image.height(),
                    k_in.width,
                    k_in.height
                ),
            ));
        }
        frames.push(OrbitImage {
            path,
            camera: f.camera,
            image,
            has_alpha,
        });
    }
    Ok(Orbit {
        dir: dir.to_path_buf(),
        frames,
    })
}

/// `mesh` (in the object frame) rendered with alpha from `views` cameras evenly around it at 10°
/// elevation and distance 2, `res`² each: an in-memory orbit for tests (this crate's and the
/// coarse and fine stages').
pub fn rendered_orbit(mesh: &orbitmesh_geom::TriMesh, views: usize, res: u32) -> Orbit {
    rendered_scene_orbit(
        &crate::Scene::new(mesh, &mut Vec::new()).unwrap(),
        views,
        res,
    )
}

/// [`rendered_orbit`] of a prepared scene (lit with a headlight, say).
pub fn rendered_scene_orbit(scene: &crate::Scene, views: usize, res: u32) -> Orbit {
    use crate::Background;
    use crate::camera::{Intrinsics, SV3D_FOV_DEG, even_azimuths, orbit};
    use crate::raster::rasterize_cpu;
    use crate::shade::shade_rgba;

    let k = Intrinsics::from_fov(SV3D_FOV_DEG, res, res);
    let frames = orbit(&even_azimuths(views), 10.0, 2.0)
        .into_iter()
        .map(|v| {
            let camera = v.camera(k);
            let vis = rasterize_cpu(scene, &camera);
            OrbitImage {
                path: "frame.png".into(),
                camera,
                image: shade_rgba(scene, &vis, &camera, 1, Background::Transparent),
                has_alpha: true,
            }
        })
        .collect();
    Orbit {
        dir: ".".into(),
        frames,
    }
}
