//! `frames`: an orbit from images made elsewhere, such as the official SV3D code's output, so they
//! feed the 3D stages as they are. Cameras come from the folder's `transforms.json`, or from
//! SV3D's fixed order: N frames, frame k at azimuth 360°·(k+1)/N, so the input view (azimuth 0)
//! is the last. Frames without alpha (SV3D writes RGB on white) get their silhouette from the
//! background model of `orbitmesh-segment`.

use std::path::{Path, PathBuf};

use image::RgbaImage;
use orbitmesh_render::camera::{Intrinsics, SV3D_FOV_DEG, SV3D_RADIUS, read_transforms_json};
use orbitmesh_render::{Camera, OrbitView};
use orbitmesh_segment::background_model;

use crate::OrbitError;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OrbitOrder {
    /// Cameras from the folder's transforms.json.
    Transforms,
    /// SV3D's order, images sorted by name, at the given elevation.
    Sv3d { elevation_deg: f64 },
}

/// One imported frame: its camera, its orbit angles when known, the image with alpha, and the
/// file it came from.
pub struct ImportedFrame {
    pub camera: Camera,
    pub view: Option<OrbitView>,
    pub image: RgbaImage,
    pub source: PathBuf,
}

fn err(path: &Path, message: impl std::fmt::Display) -> OrbitError {
    OrbitError::Input(format!("{}: {message}", path.display()))
}

fn load(path: &Path) -> Result<RgbaImage, OrbitError> {
    let decoded = image::open(path).map_err(|e| err(path, format!("not a readable image: {e}")))?;
    let mut rgba = decoded.to_rgba8();
    let has_alpha = decoded.color().has_alpha() && rgba.pixels().any(|p| p[3] < 250);
    if !has_alpha {
        let mask = background_model(&rgba, path).map_err(|e| OrbitError::Input(e.to_string()))?;
        for (p, m) in rgba.pixels_mut().zip(mask.pixels()) {
            p[3] = m[0];
        }
    }
    Ok(rgba)
}

/// Reads the frames of `dir` in the given order.
pub fn import_frames(dir: &Path, order: OrbitOrder) -> Result<Vec<ImportedFrame>, OrbitError> {
    let frames = match order {
        OrbitOrder::Transforms => {
            let t = dir.join("transforms.json");
            if !t.is_file() {
                return Err(err(
                    dir,
                    "no transforms.json (for SV3D's output use --orbit-order sv3d)",
                ));
            }
            read_transforms_json(&t, None)?
                .into_iter()
                .map(|f| {
                    let source = dir.join(&f.file);
                    Ok(ImportedFrame {
                        image: load(&source)?,
                        camera: f.camera,
                        view: f.view,
                        source,
                    })
                })
                .collect::<Result<Vec<_>, OrbitError>>()?
        }
        OrbitOrder::Sv3d { elevation_deg } => {
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|e| err(dir, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                        ["png", "jpg", "jpeg", "webp"].contains(&e.to_lowercase().as_str())
                    })
                })
                .collect();
            files.sort();
            if files.len() < 2 {
                return Err(err(
                    dir,
                    format!("{} images; an orbit needs at least 2", files.len()),
                ));
            }
            let n = files.len();
            files
                .into_iter()
                .enumerate()
                .map(|(k, source)| {
                    let image = load(&source)?;
                    let view = OrbitView {
                        elevation_deg,
                        azimuth_deg: (360.0 * (k + 1) as f64 / n as f64) % 360.0,
                        radius: SV3D_RADIUS,
                    };
                    let k = Intrinsics::from_fov(SV3D_FOV_DEG, image.width(), image.height());
                    Ok(ImportedFrame {
                        camera: view.camera(k),
                        view: Some(view),
                        image,
                        source,
                    })
                })
                .collect::<Result<Vec<_>, OrbitError>>()?
        }
    };
    let first = frames[0].image.dimensions();
    if let Some(f) = frames.iter().find(|f| f.image.dimensions() != first) {
        return Err(err(
            &f.source,
            format!(
                "{}×{}, but the first frame is {}×{}: frames must share one size",
                f.image.width(),
                f.image.height(),
                first.0,
                first.1
            ),
        ));
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgba;

    #[test]
    fn sv3d_order_puts_the_input_view_last_and_masks_white_backgrounds() {
        let dir = tempfile::tempdir().unwrap();
        for k in 0..21 {
            // RGB on white, like SV3D's output: a dark square in the middle.
            image::RgbImage::from_fn(64, 64, |x, y| {
                if (20..44).contains(&x) && (20..44).contains(&y) {
                    image::Rgb([40, 40, 90])
                } else {
                    image::Rgb([255, 255, 255])
                }
            })
            .save(dir.path().join(format!("frame_{k:02}.png")))
            .unwrap();
        }
        let frames = import_frames(
            dir.path(),
            OrbitOrder::Sv3d {
                elevation_deg: 10.0,
            },
        )
        .unwrap();
        assert_eq!(frames.len(), 21);
        let az: Vec<f64> = frames.iter().map(|f| f.view.unwrap().azimuth_deg).collect();
        assert!((az[0] - 360.0 / 21.0).abs() < 1e-9);
        assert!(
            az[20].abs() < 1e-9,
            "the last frame is the input view: {}",
            az[20]
        );
        let img = &frames[3].image;
        assert_eq!(img.get_pixel(32, 32)[3], 255);
        assert_eq!(img.get_pixel(2, 2)[3], 0);
    }

    #[test]
    fn frames_of_different_sizes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        image::RgbaImage::from_pixel(32, 32, Rgba([0, 0, 0, 0]))
            .save(dir.path().join("a.png"))
            .unwrap();
        let mut b = image::RgbaImage::from_pixel(16, 16, Rgba([0, 0, 0, 0]));
        b.put_pixel(8, 8, Rgba([9, 9, 9, 255]));
        b.save(dir.path().join("b.png")).unwrap();
        let e = import_frames(
            dir.path(),
            OrbitOrder::Sv3d {
                elevation_deg: 10.0,
            },
        )
        .err()
        .unwrap();
        assert!(
            e.to_string().contains("b.png") && e.to_string().contains("one size"),
            "{e}"
        );
    }
}
