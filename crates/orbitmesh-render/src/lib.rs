//! Rendering for orbitmesh: orbit cameras and their files, orbits on disk (frames and the
//! cameras that pose them) and vertex colours from their frames, and rasterization of a mesh into
//! visibility, colour, alpha, depth and normal buffers, on the GPU through wgpu or on the CPU,
//! with the same results.

pub mod camera;
mod colour;
mod error;
pub mod gpu_tests;
mod orbit;
pub mod raster;
mod scene;
pub mod shade;
mod sheet;
mod visible;

pub use camera::{Camera, Intrinsics, OrbitFrame, OrbitView, Projection};
pub use colour::colour_from_frames;
pub use error::RenderError;
pub use orbit::{Orbit, OrbitImage, read_orbit, rendered_orbit, rendered_scene_orbit};
pub use raster::{GpuRasterizer, Rasterizer, VisibilityBuffer};
pub use scene::Scene;
pub use shade::Background;
pub use sheet::contact_sheet;
pub use visible::sample_visible;

/// Which rasterizer a command asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    Cpu,
    Gpu,
    /// A real (hardware) GPU if there is one, else the CPU: a software adapter such as llvmpipe
    /// does not count.
    Auto,
}

/// Opens the rasterizer for a choice. `Gpu` fails without any adapter; `Auto` never fails.
pub fn open_rasterizer(choice: DeviceChoice) -> Result<Rasterizer, RenderError> {
    match choice {
        DeviceChoice::Cpu => Ok(Rasterizer::Cpu),
        DeviceChoice::Gpu => Ok(Rasterizer::Gpu(Box::new(GpuRasterizer::new()?))),
        DeviceChoice::Auto => Ok(match GpuRasterizer::new() {
            Ok(g) if !g.is_software() => Rasterizer::Gpu(Box::new(g)),
            _ => Rasterizer::Cpu,
        }),
    }
}
