//! The fine stage: the coarse shape becomes a DMTet tetrahedral SDF (per lattice point an SDF
//! value and a bounded deformation), whose marching-tetrahedra surface is refined against the
//! orbit frames by differentiable rasterization, then written as a textured mesh.

mod error;
mod raster;
mod refine;
mod surface;
mod tetgrid;
pub mod texture;

pub use error::DmtetError;
pub use refine::{Guidance, GuidedViews, RefineConfig, Refiner, StepReport};
pub use tetgrid::{TetGrid, Topology};
