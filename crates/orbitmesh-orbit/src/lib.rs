//! The orbit stage: the user's photo turned into the input SV3D expects (`prepare`: the object
//! alone, centred, filling 85% of a square frame), and orbit generators that make the frames
//! around it (`inflate`, the weight-free baseline) or import them (`frames`, e.g. SV3D's output).

pub mod frames;
pub mod generator;
pub mod inflate;
pub mod layers;
pub mod prepare;
pub mod segment;
pub mod sv3d;
pub mod weights;

pub use generator::{GeneratedOrbit, OrbitError, OrbitGenerator, OrbitProgress};
pub use inflate::{Inflate, InflateProfile};

pub use prepare::{Crop, MaskSource, PrepareError, PrepareOptions, Prepared, Segmenter, prepare};
