//! Pinhole cameras, the SV3D orbit of DESIGN.md, rays, and the two camera files orbitmesh writes:
//! `cameras.json` (its own, with the orbit angles) and `transforms.json` (instant-ngp/nerfstudio).

use std::path::Path;

use nalgebra::{Matrix4, Point3, Vector3, Vector4};
use serde::{Deserialize, Serialize};

use crate::RenderError;

/// SV3D's field of view, in degrees.
pub const SV3D_FOV_DEG: f64 = 33.8;
/// SV3D's camera distance from the origin.
pub const SV3D_RADIUS: f64 = 2.0;
/// SV3D's default elevation, in degrees.
pub const SV3D_ELEVATION_DEG: f64 = 10.0;
/// SV3D's frame count.
pub const SV3D_FRAMES: usize = 21;

/// Pixel-unit intrinsics. Pixel (0, 0) is the top-left pixel; its centre is at (0.5, 0.5).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Intrinsics {
    pub width: u32,
    pub height: u32,
    pub fx: f64,
    pub fy: f64,
    pub cx: f64,
    pub cy: f64,
}

impl Intrinsics {
    /// Square pixels, principal point at the image centre, `fov_deg` across the width.
    pub fn from_fov(fov_deg: f64, width: u32, height: u32) -> Self {
        let f = 0.5 * f64::from(width) / (0.5 * fov_deg.to_radians()).tan();
        Intrinsics {
            width,
            height,
            fx: f,
            fy: f,
            cx: 0.5 * f64::from(width),
            cy: 0.5 * f64::from(height),
        }
    }

    pub fn fov_x_deg(&self) -> f64 {
        2.0 * (0.5 * f64::from(self.width) / self.fx).atan().to_degrees()
    }

    /// The same camera at another resolution (for supersampling).
    pub fn scaled(&self, factor: u32) -> Self {
        let s = f64::from(factor);
        Intrinsics {
            width: self.width * factor,
            height: self.height * factor,
            fx: self.fx * s,
            fy: self.fy * s,
            cx: self.cx * s,
            cy: self.cy * s,
        }
    }
}

/// A pinhole camera. `camera_to_world` follows the OpenGL/nerfstudio convention: the camera
/// looks along its −Z axis, +X is right and +Y up in the image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Camera {
    pub camera_to_world: Matrix4<f64>,
    pub intrinsics: Intrinsics,
}

/// Where a camera of the orbit sits: degrees above the XY plane, degrees counter-clockwise about
/// +Z from +X, distance from the origin.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OrbitView {
    pub elevation_deg: f64,
    pub azimuth_deg: f64,
    pub radius: f64,
}

impl OrbitView {
    pub fn position(&self) -> Vector3<f64> {
        let (e, a) = (
            self.elevation_deg.to_radians(),
            self.azimuth_deg.to_radians(),
        );
        self.radius * Vector3::new(e.cos() * a.cos(), e.cos() * a.sin(), e.sin())
    }

    /// The view of a camera at `p` (the inverse of [`OrbitView::position`]; azimuth in [0, 360)).
    pub fn of_position(p: Vector3<f64>) -> Self {
        let radius = p.norm();
        OrbitView {
            elevation_deg: (p.z / radius).clamp(-1.0, 1.0).asin().to_degrees(),
            azimuth_deg: p.y.atan2(p.x).to_degrees().rem_euclid(360.0),
            radius,
        }
    }

    /// The camera at this view, looking at the origin with +Z up.
    pub fn camera(&self, intrinsics: Intrinsics) -> Camera {
        Camera::look_at(self.position(), Vector3::zeros(), Vector3::z(), intrinsics)
    }
}

/// `n` azimuths evenly around the circle, starting at 0 (the input view).
pub fn even_azimuths(n: usize) -> Vec<f64> {
    (0..n).map(|k| 360.0 * k as f64 / n as f64).collect()
}

/// The SV3D orbit of DESIGN.md at one elevation and the given azimuths.
pub fn orbit(azimuths: &[f64], elevation_deg: f64, radius: f64) -> Vec<OrbitView> {
    azimuths
        .iter()
        .map(|&azimuth_deg| OrbitView {
            elevation_deg,
            azimuth_deg,
            radius,
        })
        .collect()
}

impl Camera {
    pub fn look_at(
        eye: Vector3<f64>,
        target: Vector3<f64>,
        up: Vector3<f64>,
        intrinsics: Intrinsics,
    ) -> Self {
        let back = (eye - target).normalize();
        // Straight above or below, +Z cannot be up: use +Y, as Blender does.
        let up = if back.cross(&up).norm() < 1e-9 {
            Vector3::y()
        } else {
            up
        };
        let right = up.cross(&back).normalize();
        let cam_up = back.cross(&right);
        let mut m = Matrix4::identity();
        for k in 0..3 {
            m[(k, 0)] = right[k];
            m[(k, 1)] = cam_up[k];
            m[(k, 2)] = back[k];
            m[(k, 3)] = eye[k];
        }
        Camera {
            camera_to_world: m,
            intrinsics,
        }
    }

    pub fn position(&self) -> Vector3<f64> {
        self.camera_to_world.fixed_view::<3, 1>(0, 3).into_owned()
    }

    /// World to camera coordinates (OpenGL: visible points have z < 0).
    pub fn world_to_camera(&self) -> Matrix4<f64> {
        self.camera_to_world
            .try_inverse()
            .unwrap_or_else(Matrix4::identity)
    }

    /// The ray through continuous pixel coordinates (x right, y down; pixel centres at +0.5):
    /// origin and unit direction in world space.
    pub fn ray(&self, x: f64, y: f64) -> (Vector3<f64>, Vector3<f64>) {
        let k = &self.intrinsics;
        let d = Vector3::new((x - k.cx) / k.fx, -(y - k.cy) / k.fy, -1.0);
        let world = self.camera_to_world.fixed_view::<3, 3>(0, 0) * d;
        (self.position(), world.normalize())
    }

    /// Pixel coordinates and view depth (distance along the viewing axis) of a world point.
    pub fn project(&self, p: Vector3<f64>) -> (f64, f64, f64) {
        let c = self.world_to_camera().transform_point(&Point3::from(p));
        let depth = -c.z;
        let k = &self.intrinsics;
        (k.cx + k.fx * c.x / depth, k.cy - k.fy * c.y / depth, depth)
    }
}

/// A camera ready for projecting many points: world → camera as f32 and its intrinsics.
#[derive(Debug, Clone, Copy)]
pub struct Projection {
    world_to_camera: Matrix4<f32>,
    fx: f32,
    fy: f32,
    cx: f32,
    cy: f32,
    pub width: usize,
    pub height: usize,
}

impl Projection {
    pub fn new(camera: &Camera) -> Self {
        let k = camera.intrinsics;
        Projection {
            world_to_camera: camera.world_to_camera().cast(),
            fx: k.fx as f32,
            fy: k.fy as f32,
            cx: k.cx as f32,
            cy: k.cy as f32,
            width: k.width as usize,
            height: k.height as usize,
        }
    }

    /// Where `p` lands, in pixel units with pixel centres on integers, and its distance from the
    /// camera's centre; None behind the camera.
    pub fn project(&self, p: [f32; 3]) -> Option<([f32; 2], f32)> {
        self.camera_point(p)
            .map(|(pixel, c)| (pixel, c.xyz().norm()))
    }

    /// As [`Projection::project`], with the depth along the viewing axis (what a rasterizer's
    /// depth buffer holds) in place of the distance from the centre.
    pub fn project_view_depth(&self, p: [f32; 3]) -> Option<([f32; 2], f32)> {
        self.camera_point(p).map(|(pixel, c)| (pixel, -c.z))
    }

    /// The size of a pixel, in world units, at unit depth.
    pub fn pixel_footprint(&self) -> f32 {
        1.0 / self.fx
    }

    fn camera_point(&self, p: [f32; 3]) -> Option<([f32; 2], Vector4<f32>)> {
        let c = self.world_to_camera * Vector4::new(p[0], p[1], p[2], 1.0);
        let depth = -c.z;
        if depth <= 1e-6 {
            return None;
        }
        let x = self.cx + self.fx * c.x / depth - 0.5;
        let y = self.cy - self.fy * c.y / depth - 0.5;
        Some(([x, y], c))
    }
}

fn matrix_rows(m: &Matrix4<f64>) -> [[f64; 4]; 4] {
    [0, 1, 2, 3].map(|r| [0, 1, 2, 3].map(|c| m[(r, c)]))
}

fn matrix_from_rows(rows: &[[f64; 4]; 4]) -> Matrix4<f64> {
    Matrix4::from_fn(|r, c| rows[r][c])
}

/// One frame of an orbit on disk: its image file (relative to the folder) and its camera.
#[derive(Debug, Clone, PartialEq)]
pub struct OrbitFrame {
    pub file: String,
    pub view: Option<OrbitView>,
    pub camera: Camera,
}

#[derive(Serialize, Deserialize)]
struct CamerasJsonFrame {
    file: String,
    elevation_deg: Option<f64>,
    azimuth_deg: Option<f64>,
    radius: Option<f64>,
    camera_to_world: [[f64; 4]; 4],
}

#[derive(Serialize, Deserialize)]
struct CamerasJson {
    convention: String,
    fov_deg: f64,
    intrinsics: Intrinsics,
    frames: Vec<CamerasJsonFrame>,
}

#[derive(Serialize, Deserialize)]
struct TransformsFrame {
    file_path: String,
    transform_matrix: [[f64; 4]; 4],
}

#[derive(Serialize, Deserialize)]
struct TransformsJson {
    camera_angle_x: f64,
    #[serde(default)]
    camera_angle_y: Option<f64>,
    #[serde(default)]
    fl_x: Option<f64>,
    #[serde(default)]
    fl_y: Option<f64>,
    #[serde(default)]
    cx: Option<f64>,
    #[serde(default)]
    cy: Option<f64>,
    #[serde(default)]
    w: Option<f64>,
    #[serde(default)]
    h: Option<f64>,
    #[serde(default)]
    camera_model: Option<String>,
    frames: Vec<TransformsFrame>,
}

const CONVENTION: &str = "Z-up world; camera_to_world in the OpenGL convention (the camera looks \
along its -Z, +Y up); pixel (0,0) top-left; elevation above the XY plane, azimuth counter-clockwise \
about +Z from +X, degrees";

fn write_json(path: &Path, value: &impl Serialize) -> Result<(), RenderError> {
    orbitmesh_geom::io::write_atomic(path, |w| {
        serde_json::to_writer_pretty(&mut *w, value)?;
        std::io::Write::write_all(w, b"\n")
    })?;
    Ok(())
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, RenderError> {
    let bytes = std::fs::read(path).map_err(|e| RenderError::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| RenderError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Both camera files hold one pinhole camera for all frames: the frames' common intrinsics.
fn shared_intrinsics(path: &Path, frames: &[OrbitFrame]) -> Result<Intrinsics, RenderError> {
    let invalid = |message: &str| RenderError::Invalid {
        path: path.to_path_buf(),
        message: message.into(),
    };
    let k = frames
        .first()
        .map(|f| f.camera.intrinsics)
        .ok_or_else(|| invalid("no frames to write"))?;
    if frames.iter().any(|f| f.camera.intrinsics != k) {
        return Err(invalid(
            "frames with different intrinsics cannot share one camera file",
        ));
    }
    Ok(k)
}

/// Writes orbitmesh's `cameras.json`.
pub fn write_cameras_json(path: &Path, frames: &[OrbitFrame]) -> Result<(), RenderError> {
    let k = shared_intrinsics(path, frames)?;
    let doc = CamerasJson {
        convention: CONVENTION.into(),
        fov_deg: k.fov_x_deg(),
        intrinsics: k,
        frames: frames
            .iter()
            .map(|f| CamerasJsonFrame {
                file: f.file.clone(),
                elevation_deg: f.view.map(|v| v.elevation_deg),
                azimuth_deg: f.view.map(|v| v.azimuth_deg),
                radius: f.view.map(|v| v.radius),
                camera_to_world: matrix_rows(&f.camera.camera_to_world),
            })
            .collect(),
    };
    write_json(path, &doc)
}

pub fn read_cameras_json(path: &Path) -> Result<Vec<OrbitFrame>, RenderError> {
    let doc: CamerasJson = read_json(path)?;
    Ok(doc
        .frames
        .into_iter()
        .map(|f| OrbitFrame {
            view: match (f.elevation_deg, f.azimuth_deg, f.radius) {
                (Some(elevation_deg), Some(azimuth_deg), Some(radius)) => Some(OrbitView {
                    elevation_deg,
                    azimuth_deg,
                    radius,
                }),
                _ => None,
            },
            file: f.file,
            camera: Camera {
                camera_to_world: matrix_from_rows(&f.camera_to_world),
                intrinsics: doc.intrinsics,
            },
        })
        .collect())
}

/// Writes `transforms.json` as instant-ngp and nerfstudio read it (one shared pinhole camera).
pub fn write_transforms_json(path: &Path, frames: &[OrbitFrame]) -> Result<(), RenderError> {
    let k = shared_intrinsics(path, frames)?;
    let doc = TransformsJson {
        camera_angle_x: k.fov_x_deg().to_radians(),
        camera_angle_y: Some(2.0 * (0.5 * f64::from(k.height) / k.fy).atan()),
        fl_x: Some(k.fx),
        fl_y: Some(k.fy),
        cx: Some(k.cx),
        cy: Some(k.cy),
        w: Some(k.width.into()),
        h: Some(k.height.into()),
        camera_model: Some("OPENCV".into()),
        frames: frames
            .iter()
            .map(|f| TransformsFrame {
                file_path: f.file.clone(),
                transform_matrix: matrix_rows(&f.camera.camera_to_world),
            })
            .collect(),
    };
    write_json(path, &doc)
}

/// Reads `transforms.json` (instant-ngp or nerfstudio). Missing intrinsics are derived from
/// `camera_angle_x` and the image size; without `w`/`h` the size must be given.
pub fn read_transforms_json(
    path: &Path,
    image_size: Option<(u32, u32)>,
) -> Result<Vec<OrbitFrame>, RenderError> {
    let doc: TransformsJson = read_json(path)?;
    let (w, h) = match (doc.w, doc.h, image_size) {
        (Some(w), Some(h), _) => (w as u32, h as u32),
        (_, _, Some(size)) => size,
        _ => {
            return Err(RenderError::Invalid {
                path: path.to_path_buf(),
                message: "no w and h, and no image size given".into(),
            });
        }
    };
    let fx = doc
        .fl_x
        .unwrap_or_else(|| 0.5 * f64::from(w) / (0.5 * doc.camera_angle_x).tan());
    let k = Intrinsics {
        width: w,
        height: h,
        fx,
        fy: doc.fl_y.unwrap_or(fx),
        cx: doc.cx.unwrap_or(0.5 * f64::from(w)),
        cy: doc.cy.unwrap_or(0.5 * f64::from(h)),
    };
    Ok(doc
        .frames
        .into_iter()
        .map(|f| OrbitFrame {
            file: f.file_path,
            view: None,
            camera: Camera {
                camera_to_world: matrix_from_rows(&f.transform_matrix),
                intrinsics: k,
            },
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azimuth_zero_sits_on_plus_x_looking_at_the_origin() {
        let k = Intrinsics::from_fov(SV3D_FOV_DEG, 64, 64);
        let cam = OrbitView {
            elevation_deg: 0.0,
            azimuth_deg: 0.0,
            radius: 2.0,
        }
        .camera(k);
        assert!((cam.position() - Vector3::new(2.0, 0.0, 0.0)).norm() < 1e-12);
        let (_, dir) = cam.ray(32.0, 32.0);
        assert!((dir - Vector3::new(-1.0, 0.0, 0.0)).norm() < 1e-12);
        // +Z is up in the image; seen from +X, +Y is on the right.
        let (x, y, depth) = cam.project(Vector3::new(0.0, 0.0, 0.5));
        assert!((x - 32.0).abs() < 1e-9 && y < 32.0 && (depth - 2.0).abs() < 1e-12);
        let (x, _, _) = cam.project(Vector3::new(0.0, 0.5, 0.0));
        assert!(x > 32.0, "+Y appears on the right from the +X side");
        // An elevated camera looks down.
        let up = OrbitView {
            elevation_deg: 30.0,
            azimuth_deg: 90.0,
            radius: 2.0,
        };
        let p = up.position();
        assert!((p - Vector3::new(0.0, 2.0 * 30f64.to_radians().cos(), 1.0)).norm() < 1e-12);
    }

    #[test]
    fn a_view_is_recovered_from_its_position() {
        for (elevation_deg, azimuth_deg, radius) in
            [(10.0, 0.0, 2.0), (-35.0, 271.5, 0.5), (89.0, 180.0, 3.0)]
        {
            let view = OrbitView {
                elevation_deg,
                azimuth_deg,
                radius,
            };
            let back = OrbitView::of_position(view.position());
            assert!(
                (back.elevation_deg - elevation_deg).abs() < 1e-9,
                "{back:?}"
            );
            assert!((back.azimuth_deg - azimuth_deg).abs() < 1e-9, "{back:?}");
            assert!((back.radius - radius).abs() < 1e-12, "{back:?}");
        }
    }

    #[test]
    fn rays_and_projection_agree() {
        let k = Intrinsics::from_fov(SV3D_FOV_DEG, 100, 80);
        let cam = OrbitView {
            elevation_deg: 10.0,
            azimuth_deg: 123.0,
            radius: 2.0,
        }
        .camera(k);
        for (x, y) in [(0.5, 0.5), (99.5, 10.0), (50.0, 40.0)] {
            let (o, d) = cam.ray(x, y);
            let (px, py, depth) = cam.project(o + 1.7 * d);
            assert!((px - x).abs() < 1e-9 && (py - y).abs() < 1e-9 && depth > 0.0);
        }
    }

    #[test]
    fn transforms_json_round_trip_gives_the_same_rays() {
        let dir = tempfile::tempdir().unwrap();
        let k = Intrinsics::from_fov(SV3D_FOV_DEG, 576, 576);
        let frames: Vec<OrbitFrame> = orbit(&even_azimuths(21), 10.0, 2.0)
            .into_iter()
            .enumerate()
            .map(|(i, v)| OrbitFrame {
                file: format!("{i:03}.png"),
                view: Some(v),
                camera: v.camera(k),
            })
            .collect();
        let p = dir.path().join("transforms.json");
        write_transforms_json(&p, &frames).unwrap();
        let back = read_transforms_json(&p, None).unwrap();
        let c = dir.path().join("cameras.json");
        write_cameras_json(&c, &frames).unwrap();
        let ours = read_cameras_json(&c).unwrap();
        assert_eq!(ours[5].view, frames[5].view);
        let mut worst: f64 = 0.0;
        for ((a, b), o) in frames.iter().zip(&back).zip(&ours) {
            assert_eq!(a.file, b.file);
            for (x, y) in [(0.5, 0.5), (288.0, 288.0), (575.5, 100.25)] {
                for other in [b, o] {
                    let (o1, d1) = a.camera.ray(x, y);
                    let (o2, d2) = other.camera.ray(x, y);
                    worst = worst.max((o1 - o2).norm()).max((d1 - d2).norm());
                }
            }
        }
        assert!(worst < 1e-6, "max ray error {worst}");
    }
}
