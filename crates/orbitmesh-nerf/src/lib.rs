//! The coarse stage: posed orbit frames in, a first 3D shape out. The visual hull (space carving
//! by the frames' silhouettes) is the baseline every reconstruction is measured against; the
//! Instant-NGP hash-grid NeRF ([`train::Trainer`]) refines on it.

pub mod colour;
pub mod composite;
mod error;
pub mod export;
pub mod field;
pub mod hashgrid;
pub mod hull;
pub mod occupancy;
pub mod orbit;
pub mod train;

pub use colour::colour_from_frames;
pub use error::NerfError;
pub use hull::{HullOptions, visual_hull};
pub use orbit::{Orbit, OrbitImage, read_orbit};
