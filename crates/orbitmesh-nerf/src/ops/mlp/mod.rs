//! The radiance field's two MLPs as one backend op ([`radiance_mlp`]): one fused kernel on the
//! CPU ([`cpu::FusedMlp`]), burn's own ops on other devices.
//!
//! As a chain of burn ops, a training step materialises a dozen whole-batch tensors (262k samples ×
//! 64 floats each) and reads each back from memory several times; the MLPs and their autodiff were
//! then more than half of a step. Here the samples go through both MLPs block by block, each block's
//! activations staying in L2, and the backward recomputes a block's activations instead of storing
//! them. The GEMMs are small (widths 16–64), so one register-blocked kernel, compiled for AVX-512,
//! AVX2 or plain SSE and chosen at run time, does them all.
//!
//! This file holds the op's public API: the layer widths, the backend trait and [`radiance_mlp`].
//! The fused CPU kernel is in `cpu.rs`; the trait's default bodies (burn's own ops, the GPU's
//! path) in `plain.rs`, with `cube.rs` holding only the empty `CubeBackend` impl that takes them;
//! the backward under autodiff in `autodiff.rs`.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::tensor::Tensor;

mod autodiff;
mod cpu;
mod cube;
mod plain;

use plain::{PlainActivations, plain_backward};

/// Densities are exp(log density), clamped so an untrained field cannot overflow.
pub const MAX_LOG_DENSITY: f32 = 15.0;

/// The layer widths: the hash encoding's width, the hidden width, the density MLP's outputs (log
/// density + geometry features) and the view direction's spherical-harmonic coefficients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MlpDims {
    pub encoded: usize,
    pub hidden: usize,
    pub geometry: usize,
    pub sh: usize,
}

impl MlpDims {
    /// The colour MLP's input: the SH coefficients and the geometry features after log density.
    pub fn colour_in(&self) -> usize {
        self.sh + self.geometry - 1
    }

    /// (inputs, outputs) of the five layers, in [`cpu::FusedMlp::new`]'s order.
    pub fn layers(&self) -> [(usize, usize); 5] {
        let h = self.hidden;
        [
            (self.encoded, h),
            (h, self.geometry),
            (self.colour_in(), h),
            (h, h),
            (h, 3),
        ]
    }
}

/// The two MLPs as a backend op: (σ, r, g, b) [n,4] from the encoding [n,E], the view
/// direction's SH [n,S] and the five weight matrices (layer order of [`cpu::FusedMlp`]). The CPU runs
/// [`cpu::FusedMlp`]; other backends compose burn's ops (the default bodies), which fusion merges on
/// the GPU.
#[backend_extension(Cube, Fusion, Flex, Autodiff)]
pub trait RadianceMlpOps: Backend {
    #[allow(clippy::too_many_arguments)]
    #[fusion(default)]
    fn radiance_mlp(
        encoded: FloatTensor<Self>,
        sh: FloatTensor<Self>,
        density_in: FloatTensor<Self>,
        density_out: FloatTensor<Self>,
        colour_in: FloatTensor<Self>,
        colour_hidden: FloatTensor<Self>,
        colour_out: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let weights = [
            density_in,
            density_out,
            colour_in,
            colour_hidden,
            colour_out,
        ];
        let a = PlainActivations::<Self>::new(encoded, sh, &weights);
        Self::float_cat(vec![a.density(), Self::sigmoid(a.c)], 1)
    }

    /// The gradients of the encoding and of the five weights from the output's.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    #[fusion(default)]
    fn radiance_mlp_backward(
        encoded: FloatTensor<Self>,
        sh: FloatTensor<Self>,
        density_in: FloatTensor<Self>,
        density_out: FloatTensor<Self>,
        colour_in: FloatTensor<Self>,
        colour_hidden: FloatTensor<Self>,
        colour_out: FloatTensor<Self>,
        grad_out: FloatTensor<Self>,
    ) -> (
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    ) {
        let weights = [
            density_in,
            density_out,
            colour_in,
            colour_hidden,
            colour_out,
        ];
        let [d_encoded, d0, d1, d2, d3, d4] =
            plain_backward::<Self>(encoded, sh, weights, grad_out);
        (d_encoded, d0, d1, d2, d3, d4)
    }
}

/// (σ, r, g, b) [n,4]: differentiable in the encoding and the weights (not in `sh`).
pub fn radiance_mlp(encoded: Tensor<2>, sh: Tensor<2>, weights: [Tensor<2>; 5]) -> Tensor<2> {
    let [w0, w1, w2, w3, w4] = weights.map(|w| w.into_dispatch());
    Tensor::from_dispatch(Dispatch::radiance_mlp(
        encoded.into_dispatch(),
        sh.into_dispatch(),
        w0,
        w1,
        w2,
        w3,
        w4,
    ))
}

/// The inputs and helpers the tests of `cpu.rs`, `cube.rs` and `autodiff.rs` share.
#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Widths that are no multiple of the lanes and a batch that is no multiple of the block, so
    /// the padding and the partial block are exercised.
    pub(super) const DIMS: MlpDims = MlpDims {
        encoded: 12,
        hidden: 24,
        geometry: 6,
        sh: 4,
    };
    const N: usize = 300;

    pub(super) struct Inputs {
        pub(super) encoded: Vec<f32>,
        pub(super) sh: Vec<f32>,
        pub(super) weights: Vec<Vec<f32>>,
        pub(super) upstream: Vec<f32>,
    }

    pub(super) fn inputs(seed: u64) -> Inputs {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut random = |n: usize, scale: f32| -> Vec<f32> {
            (0..n).map(|_| rng.random_range(-scale..scale)).collect()
        };
        Inputs {
            encoded: random(N * DIMS.encoded, 1.0),
            sh: random(N * DIMS.sh, 1.0),
            weights: DIMS
                .layers()
                .iter()
                .map(|(i, o)| random(i * o, 0.6))
                .collect(),
            upstream: random(N * 4, 1.0),
        }
    }

    /// Output and the gradients of the encoding and the five weights for `inputs`, through `mlp`
    /// on `device` (autodiff).
    pub(super) fn run(
        inputs: &Inputs,
        device: &Device,
        mlp: impl Fn(Tensor<2>, Tensor<2>, [Tensor<2>; 5]) -> Tensor<2>,
    ) -> Vec<Vec<f32>> {
        let tensor = |v: &[f32], shape: [usize; 2]| {
            Tensor::<2>::from_data(TensorData::new(v.to_vec(), shape), device)
        };
        let encoded = tensor(&inputs.encoded, [N, DIMS.encoded]).require_grad();
        let shapes = DIMS.layers();
        let weights: [Tensor<2>; 5] = std::array::from_fn(|l| {
            tensor(&inputs.weights[l], [shapes[l].0, shapes[l].1]).require_grad()
        });
        let out = mlp(
            encoded.clone(),
            tensor(&inputs.sh, [N, DIMS.sh]),
            weights.clone(),
        );
        let grads = (out.clone() * tensor(&inputs.upstream, [N, 4]))
            .sum()
            .backward();
        let values = |t: Tensor<2>| t.into_data().try_into_vec::<f32>().unwrap();
        let mut all = vec![
            values(out),
            values(encoded.grad(&grads).expect("encoding gradient")),
        ];
        all.extend(weights.map(|w| values(w.grad(&grads).expect("weight gradient"))));
        all
    }

    /// Largest difference relative to the largest magnitude, per tensor: the weight gradients are
    /// sums over the batch with cancellation, so elementwise relative differences would measure
    /// the summation order.
    pub(super) fn worst(a: &[Vec<f32>], b: &[Vec<f32>]) -> Vec<f32> {
        a.iter()
            .zip(b)
            .map(|(a, b)| {
                let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let diff = a
                    .iter()
                    .zip(b)
                    .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
                diff / scale
            })
            .collect()
    }
}
