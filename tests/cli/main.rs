//! End-to-end tests of the `orbitmesh` binary, one module per command.
//!
//! They are one test binary, not one per command: each binary links the whole burn and wgpu
//! stack, so ten of them cost ten long links and gigabytes of target folder.

mod common;

mod bench;
mod engines;
mod eval;
mod full_disk;
mod hull;
mod mesh;
mod nerf;
mod prepare;
mod refine;
mod render;
mod segment;
mod serve;
mod sv3d;
