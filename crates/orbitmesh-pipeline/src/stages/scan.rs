//! Renders of a mesh (a scan) from an orbit of cameras, written as an orbit folder: frames with
//! alpha, cameras.json and transforms.json, optionally depth and normal pictures. `render` writes
//! them for users; `bench` as the conditioning view and the oracle orbit of its plans.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::codecs::png::PngEncoder;
use image::{ImageEncoder, RgbaImage};
use orbitmesh_geom::UpAxis;
use orbitmesh_render::camera::{self, Intrinsics, OrbitFrame};
use orbitmesh_render::contact_sheet;
use orbitmesh_render::raster::MAX_SIDE;
use orbitmesh_render::shade::{depth_image, normal_image, shade_rgba};
use orbitmesh_render::{Background, Camera, OrbitView, Rasterizer, Scene, VisibilityBuffer};
use rayon::prelude::*;

use crate::error::{PipelineError, Result};
use crate::output::{StagedFolder, encode_png, make_folder, save};
use crate::stages::read_mesh_z_up;

/// Supersampling factor per side for colour and alpha: 2 = 4 samples per pixel.
pub const SSAA: u32 = 2;

/// What is written per frame besides its colour: depth/NNN.png (16-bit, millimetres) and
/// normal/NNN.png.
#[derive(Debug, Clone, Copy, Default)]
pub struct Extras {
    pub depth: bool,
    pub normals: bool,
}

/// A mesh file seen from an orbit of cameras: what `orbitmesh render` draws.
#[derive(Debug, Clone)]
pub struct MeshOrbit {
    /// The mesh file (or GSO object folder).
    pub mesh: PathBuf,
    /// The axis the file calls up.
    pub up: UpAxis,
    /// Centre the bounding box and scale its longest side to 1 first.
    pub normalise: bool,
    /// The cameras' azimuths (degrees), their elevation above the XY plane and their distance.
    pub azimuths: Vec<f64>,
    pub elevation_deg: f64,
    pub radius: f64,
    /// Horizontal field of view in degrees, and the frames' side in pixels.
    pub fov_deg: f64,
    pub res: u32,
    pub background: Background,
    pub extras: Extras,
    /// Where a labelled contact sheet of the frames goes, if anywhere.
    pub sheet: Option<PathBuf>,
}

impl MeshOrbit {
    /// Checks the settings and reads the mesh into the scene to render (before any device is
    /// opened), with the mesh file's warnings.
    pub fn scene(&self) -> Result<(Scene, Vec<String>)> {
        // Named by the command line's options, which these fields are.
        let invalid = |message: String| Err(PipelineError::Invalid(message));
        let max = MAX_SIDE / SSAA;
        if self.res == 0 || self.res > max {
            return invalid(format!("--res {}: must be 1 to {max}", self.res));
        }
        if !(self.fov_deg > 0.0 && self.fov_deg < 180.0 && self.radius > 0.0) {
            return invalid("--fov must be in (0, 180) degrees and --radius positive".into());
        }
        if self.azimuths.is_empty() {
            return invalid("--azimuths: no angles given".into());
        }
        let file = read_mesh_z_up(&self.mesh, self.up, self.normalise)?;
        let mut warnings = file.warnings;
        let scene = Scene::new(&file.mesh, &mut warnings)
            .map_err(|e| PipelineError::input(&file.path, e.to_string()))?;
        Ok((scene, warnings))
    }

    /// Renders `scene` (from [`MeshOrbit::scene`]) from the orbit into the folder `out`, replaced
    /// whole or left as it was ([`render_orbit`]'s files), then the contact sheet; `per_frame`
    /// runs as each frame is written. Returns how many frames were written.
    pub fn render_into(
        &self,
        scene: &Scene,
        rasterizer: &Rasterizer,
        out: &Path,
        per_frame: impl Fn() + Sync,
    ) -> Result<usize> {
        let views = camera::orbit(&self.azimuths, self.elevation_deg, self.radius);
        let intrinsics = Intrinsics::from_fov(self.fov_deg, self.res, self.res);
        let staged = StagedFolder::new(out)?;
        let rendered = render_orbit(
            scene,
            &views,
            intrinsics,
            self.background,
            rasterizer,
            staged.path(),
            self.extras,
            per_frame,
        )?;
        if let Some(sheet) = &self.sheet {
            let labelled: Vec<(RgbaImage, String)> = rendered
                .iter()
                .enumerate()
                .map(|(k, (frame, image))| {
                    let azimuth = frame.view.map_or(0.0, |v| v.azimuth_deg);
                    (image.clone(), format!("{k} az {azimuth:.0}"))
                })
                .collect();
            save(sheet, &encode_png(&contact_sheet(&labelled, 192, None))?)?;
        }
        staged.publish()?;
        Ok(rendered.len())
    }
}

/// One colour picture of `scene` from `camera`, 4× supersampled.
pub fn render_view(
    scene: &Scene,
    camera: &Camera,
    background: Background,
    rasterizer: &Rasterizer,
) -> Result<RgbaImage> {
    let ssaa = Camera {
        intrinsics: camera.intrinsics.scaled(SSAA),
        ..*camera
    };
    let vis = rasterizer.rasterize(scene, &ssaa)?;
    Ok(shade_rgba(scene, &vis, &ssaa, SSAA, background))
}

/// Renders `scene` from every view into `dir` as 000.png… (4× supersampled, frames in parallel)
/// with cameras.json and transforms.json, and `extras`; `per_frame` runs after each frame is
/// written. Returns the frames and their pictures, in view order.
#[allow(clippy::too_many_arguments)]
pub fn render_orbit(
    scene: &Scene,
    views: &[OrbitView],
    intrinsics: Intrinsics,
    background: Background,
    rasterizer: &Rasterizer,
    dir: &Path,
    extras: Extras,
    per_frame: impl Fn() + Sync,
) -> Result<Vec<(OrbitFrame, RgbaImage)>> {
    make_folder(dir)?;
    for (wanted, sub) in [(extras.depth, "depth"), (extras.normals, "normal")] {
        if wanted {
            make_folder(&dir.join(sub))?;
        }
    }
    // Frames in parallel (each one's rasterizing and shading are parallel too): the serial parts
    // of one frame, PNG encoding above all, overlap with the work of another.
    let rendered: Vec<(OrbitFrame, RgbaImage)> = views
        .par_iter()
        .enumerate()
        .map(|(k, view)| {
            let cam = view.camera(intrinsics);
            let rgba = render_view(scene, &cam, background, rasterizer)?;
            let file = format!("{k:03}.png");
            save(&dir.join(&file), &encode_png(&rgba)?)?;
            if extras.depth || extras.normals {
                let vis = rasterizer.rasterize(scene, &cam)?;
                write_extras(extras, dir, scene, &vis, &file)?;
            }
            per_frame();
            let frame = OrbitFrame {
                file,
                view: Some(*view),
                camera: cam,
            };
            Ok((frame, rgba))
        })
        .collect::<Result<_>>()?;
    let frames: Vec<OrbitFrame> = rendered.iter().map(|(f, _)| f.clone()).collect();
    camera::write_cameras_json(&dir.join("cameras.json"), &frames)?;
    camera::write_transforms_json(&dir.join("transforms.json"), &frames)?;
    Ok(rendered)
}

/// The depth and normal pictures of one frame, from a visibility buffer at the frame's resolution.
fn write_extras(
    extras: Extras,
    dir: &Path,
    scene: &Scene,
    vis: &VisibilityBuffer,
    file: &str,
) -> Result<()> {
    if extras.depth {
        let depth = depth_image(vis);
        // The encoder takes samples in native byte order and writes PNG's big-endian itself.
        let raw: Vec<u8> = depth
            .as_raw()
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        let mut bytes = Vec::new();
        PngEncoder::new(Cursor::new(&mut bytes))
            .write_image(
                &raw,
                depth.width(),
                depth.height(),
                image::ExtendedColorType::L16,
            )
            .map_err(PipelineError::Png)?;
        save(&dir.join("depth").join(file), &bytes)?;
    }
    if extras.normals {
        save(
            &dir.join("normal").join(file),
            &encode_png(&normal_image(scene, vis))?,
        )?;
    }
    Ok(())
}
