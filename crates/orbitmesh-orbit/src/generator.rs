//! Orbit generators: from the prepared input image to frames (with alpha) seen from an orbit of
//! cameras, which the 3D stages reconstruct.

use image::RgbaImage;
use orbitmesh_render::camera::Intrinsics;
use orbitmesh_render::{OrbitView, Rasterizer, RenderError};

#[derive(Debug, thiserror::Error)]
pub enum OrbitError {
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Sv3d(#[from] orbitmesh_sv3d::Sv3dError),
}

/// The frames of an orbit, in the order of the views asked for, and what the user should know
/// about them.
#[derive(Debug)]
pub struct GeneratedOrbit {
    pub frames: Vec<RgbaImage>,
    pub warnings: Vec<String>,
}

/// One finished part of an orbit's generation, for progress and timing reports.
#[derive(Clone, Debug)]
pub struct OrbitProgress {
    /// What the part was, for the user.
    pub part: String,
    /// Parts done so far, this one included, of `total`.
    pub done: usize,
    pub total: usize,
    pub seconds: f64,
}

/// Makes the frames of an orbit around the object of a prepared image (square, the object
/// centred, seen from `input_view`).
pub trait OrbitGenerator {
    /// A short name for reports and `stage.json`.
    fn name(&self) -> &'static str;

    /// What the frames are, in one line, for the user: labelled honestly.
    fn describe(&self) -> &'static str;

    fn generate(
        &self,
        prepared: &RgbaImage,
        input_view: OrbitView,
        views: &[OrbitView],
        intrinsics: Intrinsics,
        rasterizer: &Rasterizer,
        progress: &mut dyn FnMut(OrbitProgress),
    ) -> Result<GeneratedOrbit, OrbitError>;
}
