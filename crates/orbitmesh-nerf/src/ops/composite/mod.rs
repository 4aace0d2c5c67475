//! Volume-rendering compositing of packed ray samples, and its backward, as a burn custom op
//! with rayon kernels on the CPU and CubeCL kernels on the GPU.
//!
//! Rays are packed: ray r owns samples `offsets[r]..offsets[r+1]`, front to back, each with its
//! segment length `delta`. The output per ray is (R, G, B, A) = Σ wᵢ·(cᵢ, 1) with
//! wᵢ = Tᵢ·(1 − exp(−σᵢδᵢ)) and Tᵢ the transmittance before sample i.
//!
//! This file holds the op's public API: the packing, the backend trait and [`composite`]; the
//! rayon kernels are in `cpu.rs`, the CubeCL kernels and their launch in `cube.rs`, the backward
//! under autodiff in `autodiff.rs`.

use std::sync::Arc;

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::tensor::{Shape, Tensor};

mod autodiff;
mod cpu;
mod cube;

pub use cpu::composite_cpu;

/// How samples group into rays, and their segment lengths. Built once per batch on the CPU.
#[derive(Debug, Clone, PartialEq)]
pub struct RayPacking {
    /// `rays + 1` entries; the last is the number of samples.
    pub offsets: Vec<u32>,
    pub deltas: Vec<f32>,
}

impl RayPacking {
    pub fn rays(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn samples(&self) -> usize {
        self.deltas.len()
    }
}

/// Compositing as a backend op.
#[backend_extension(Cube, Fusion, Flex, Autodiff)]
pub trait CompositeOps: Backend {
    /// `sigma` [n], `rgb` [n,3] → [rays, 4].
    #[fusion(dtype = sigma, shape = Shape::new([packing.rays(), 4]))]
    fn composite(
        sigma: FloatTensor<Self>,
        rgb: FloatTensor<Self>,
        packing: Arc<RayPacking>,
    ) -> FloatTensor<Self>;
    /// (∂L/∂σ, ∂L/∂rgb) from the inputs, the forward's output and ∂L/∂out, as one [n,4] tensor
    /// (column 0: σ, columns 1..4: rgb).
    #[fusion(dtype = sigma, shape = Shape::new([packing.samples(), 4]))]
    fn composite_backward(
        sigma: FloatTensor<Self>,
        rgb: FloatTensor<Self>,
        out: FloatTensor<Self>,
        grad_out: FloatTensor<Self>,
        packing: Arc<RayPacking>,
    ) -> FloatTensor<Self>;
}

/// Differentiable in `sigma` [n] and `rgb` [n,3]; returns [rays, 4] (colour, opacity).
pub fn composite(sigma: Tensor<1>, rgb: Tensor<2>, packing: Arc<RayPacking>) -> Tensor<2> {
    Tensor::from_dispatch(Dispatch::composite(
        sigma.into_dispatch(),
        rgb.into_dispatch(),
        packing,
    ))
}
