//! The orbit stage. So far `prepare`: the user's photo turned into the input SV3D expects (the
//! object alone, centred, filling 85% of a square frame). The orbit generators come next.

pub mod prepare;

pub use prepare::{MaskSource, PrepareError, PrepareOptions, Prepared, prepare};
