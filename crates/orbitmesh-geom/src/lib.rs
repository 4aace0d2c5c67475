//! Geometry for orbitmesh: triangle meshes and their files, the Z-up object frame, seeded surface
//! sampling, and the evaluation metrics of the `gso` protocol (DESIGN.md).

pub mod bake;
mod error;
pub mod eval;
pub mod frame;
mod icp;
pub mod io;
pub mod isosurface;
mod mesh;
mod metrics;
pub mod nearest;
pub mod sample;
pub mod shapes;
mod simplify;
mod tangent;
pub mod texture;
pub mod winding;

pub use error::{GeomError, Result};
pub use eval::{Align, EvalFrame, EvalOptions, EvalReport, evaluate, evaluate_with};
pub use frame::{Pivot, UpAxis};
pub use io::{MeshFile, read_mesh, write_mesh};
pub use mesh::{Aabb, Material, TriMesh, triangle_area};
pub use metrics::{chamfer_distance, volume_iou};
pub use sample::{Sampling, SurfaceSamples, sample_surface};
pub use tangent::tangent_frame;
