//! The fine stage: the coarse shape becomes a DMTet tetrahedral SDF (per lattice point an SDF
//! value and a bounded deformation), whose marching-tetrahedra surface is refined against the
//! orbit frames by differentiable rasterization, then written as a textured mesh.

mod error;
pub mod raster;
pub mod refine;
pub mod surface;
pub mod tetgrid;
pub mod texture;

pub use error::DmtetError;
pub use refine::{Guidance, GuidedViews, RefineConfig, Refiner, StepReport};
pub use tetgrid::{TetGrid, Topology};
