//! The orbit stage: orbit generators that make the frames around the object of a prepared photo
//! (the [`OrbitGenerator`] trait; [`Inflate`], the weight-free baseline; [`Sv3dGenerator`], SV3D's
//! model of `orbitmesh-sv3d`) or import them (`frames`, e.g. the official SV3D code's output). The
//! photo is prepared by `orbitmesh-segment`.

mod frames;
mod generator;
mod inflate;
mod sv3d;

pub use frames::{OrbitOrder, import_frames};
pub use generator::{GeneratedOrbit, OrbitError, OrbitGenerator, OrbitProgress};
pub use inflate::{Inflate, InflateProfile};
pub use sv3d::Sv3dGenerator;
