//! Geometry for orbitmesh: triangle meshes and their files, the Z-up object frame, seeded surface
//! sampling, and the evaluation metrics of the `gso` protocol (DESIGN.md).

pub mod bake;
mod error;
mod eval;
mod frame;
mod icp;
pub mod io;
mod isosurface;
mod mesh;
mod metrics;
mod nearest;
mod sample;
pub mod shapes;
mod simplify;
mod tangent;
pub mod texture;
mod winding;

pub use error::{GeomError, Result};
pub use eval::{Align, EvalFrame, EvalOptions, EvalReport, Metrics, evaluate, evaluate_with};
pub use frame::{Pivot, UpAxis, normalising_transform};
pub use io::{MeshFile, read_mesh, write_mesh};
pub use isosurface::{ScalarGrid, keep_largest_solid, marching_cubes};
pub use mesh::{Aabb, Material, TriMesh, triangle_area};
pub use metrics::{chamfer_distance, volume_iou};
pub use nearest::PointIndex;
pub use sample::{Sampling, SurfaceSamples, sample_surface};
pub use tangent::tangent_frame;
pub use winding::WindingNumber;
