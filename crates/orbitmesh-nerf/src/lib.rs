//! The coarse stage: posed orbit frames in, a first 3D shape out. So far the visual hull (space
//! carving by the frames' silhouettes), the baseline every reconstruction is measured against; the
//! hash-grid NeRF comes next.

pub mod colour;
mod error;
pub mod hull;
pub mod orbit;

pub use colour::colour_from_frames;
pub use error::NerfError;
pub use hull::{HullOptions, visual_hull};
pub use orbit::{Orbit, OrbitImage, read_orbit};
