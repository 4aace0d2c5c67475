//! The neural-network parts orbitmesh's learned models (the IS-Net segmenter, SV3D) are built
//! from: the PyTorch layers they are made of, run with burn's tensor ops and, where burn's CPU
//! kernels are slow, with our own ([`layers`]: linear, 2D and temporal convolutions with their CPU
//! GEMM path, group and layer norms, chunked multi-head attention, tensor-size plans), and reading
//! their PyTorch-trained weights from safetensors by the checkpoint's own names ([`weights`]).
//! With the `parity` feature, the `parity` module holds the helpers their device-parity tests
//! share.

mod fused;
pub mod layers;
#[cfg(feature = "parity")]
pub mod parity;
pub mod weights;

pub use weights::{Params, Weights, WeightsError};
