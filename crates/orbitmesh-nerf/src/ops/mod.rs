//! The field's custom burn ops, each in a folder laid out as burn's `custom-cubecl-kernel` example,
//! so that a reader finds the kernel, its launch and its backward apart:
//!
//! - `mod.rs`: the op's public API: its configuration, the backend trait (`#[backend_extension]`),
//!   the tensor-level function and any module holding its parameters;
//! - `cpu.rs`: the CPU twin on slices (rayon, compiled per instruction set), the reference the GPU
//!   is tested against, and the `Flex` backend's implementation of the trait;
//! - `cube.rs`: the CubeCL kernels and their launch, the `CubeBackend` implementation;
//! - `autodiff.rs`: the hand-written backward, the `Autodiff` implementation.
//!
//! Each file's tests sit beside its code: CPU tests in `cpu.rs`, GPU-against-CPU parity in
//! `cube.rs`, the op's gradient against burn's own autodiff in `autodiff.rs`.

use burn::backend::flex::FlexTensor;
use burn::tensor::TensorData;

pub mod composite;
pub mod hashgrid;
pub mod mlp;

/// A Flex tensor's values in row-major order (CPU kernels take plain slices).
/// The values of a row-major f32 tensor (as `FlexTensor::to_contiguous` returns, sharing the
/// storage where the tensor already is).
pub(crate) fn flex_values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("a contiguous f32 tensor")
}

pub(crate) fn flex_tensor(values: Vec<f32>, shape: [usize; 2]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}
