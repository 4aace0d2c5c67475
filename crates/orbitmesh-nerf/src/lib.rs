//! The coarse stage: posed orbit frames in, a first 3D shape out. The visual hull (space carving
//! by the frames' silhouettes) is the baseline every reconstruction is measured against; the
//! Instant-NGP hash-grid NeRF ([`train::Trainer`]) refines on it.

mod adam;
mod error;
mod export;
mod field;
mod hull;
mod occupancy;
mod ops;
mod simd;
pub mod train;

pub use error::NerfError;
pub use export::{DepthView, density_grid, depth_carving, field_mesh};
pub use field::RadianceField;
pub use hull::{HullOptions, carved_cells, silhouette_grid, visual_hull};

/// Largest difference between a GPU kernel's values and the CPU kernel's, relative to the larger
/// of 1e-3 and the CPU value's magnitude.
#[cfg(test)]
pub(crate) fn relative_difference(gpu: &[f32], cpu: &[f32]) -> f32 {
    assert_eq!(gpu.len(), cpu.len());
    gpu.iter()
        .zip(cpu)
        .map(|(g, c)| (g - c).abs() / c.abs().max(1e-3))
        .fold(0.0, f32::max)
}
