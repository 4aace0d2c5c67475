//! CPU kernels for the layers between SV3D's matrix products: group norm (optionally followed
//! by SiLU), layer norm and GEGLU. flex runs each elementwise op on one thread, as a pass of its
//! own over memory, so at full size these layers held one of the two cores idle: perf put 25% of
//! a UNet call's samples on the main thread while both rayon workers waited, most of them in
//! these layers' passes and in scalar `erf` and `exp`. Here each layer is one parallel pass for
//! its statistics and one that writes the result, with `exp` and `erf` as polynomials the
//! compiler can vectorise. Each kernel has burn's ops as its twin (autodiff and the GPU run
//! those), and the tests hold them together.

use std::mem::MaybeUninit;

use burn::tensor::{DType, Device, Tensor, TensorData};
use rayon::prelude::*;

use crate::layers::{SendPtr, matmul, with_simd};

/// Whether `x` can go through the host kernels: f32 on flex, not tracked by autodiff.
pub(crate) fn on_host<const D: usize>(x: &Tensor<D>) -> bool {
    !x.is_autodiff() && x.device() == Device::flex() && x.dtype() == DType::F32
}

/// A tensor's values as f32 on the host.
pub(crate) fn host_values(data: TensorData) -> Vec<f32> {
    data.convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 tensor")
}

/// `kernel` applied to `x`'s values on the host; the result is a tensor of `dims` on `x`'s
/// device.
pub(crate) fn through_host<const D: usize>(
    x: Tensor<D>,
    dims: [usize; D],
    kernel: impl FnOnce(&[f32]) -> Vec<f32>,
) -> Tensor<D> {
    let device = x.device();
    let y = kernel(&host_values(x.into_data()));
    Tensor::from_data(TensorData::new(y, dims), &device)
}

/// A vector of `len` floats whose blocks of `block` are written in parallel by
/// `write(index, block)`, which must write every element of its block.
fn filled_in_parallel(
    len: usize,
    block: usize,
    write: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(block.max(1))
        .enumerate()
        .for_each(|(i, chunk)| write(i, chunk));
    // SAFETY: every block was written (see the contract above).
    unsafe { out.set_len(len) };
    out
}

/// Lanes of the sums in [`mean_and_variance`]: separate accumulators the compiler keeps in
/// vector registers.
const SUM_LANES: usize = 16;

/// The sum of `values` over [`SUM_LANES`] accumulators.
#[inline(always)]
fn lane_sum(values: &[f32], term: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0f32; SUM_LANES];
    let mut chunks = values.chunks_exact(SUM_LANES);
    for chunk in &mut chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += term(v);
        }
    }
    let tail: f32 = chunks.remainder().iter().map(|&v| term(v)).sum();
    lanes.iter().sum::<f32>() + tail
}

/// The mean of `values` and their variance about it (biased, as torch's norms use), in two
/// passes as burn computes them.
fn mean_and_variance(values: &[f32]) -> (f32, f32) {
    let n = values.len() as f32;
    let mut stats = (0.0, 0.0);
    with_simd(|| {
        let mean = lane_sum(values, |v| v) / n;
        let variance = lane_sum(values, |v| (v - mean) * (v - mean)) / n;
        stats = (mean, variance);
    });
    stats
}

/// `torch.nn.GroupNorm` of `x` [batch, channels, …] (contiguous), then SiLU if `silu`.
pub(crate) fn group_norm(
    x: &[f32],
    [batch, channels, groups]: [usize; 3],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    silu: bool,
) -> Vec<f32> {
    let per_channel = x.len() / (batch * channels);
    let group_channels = channels / groups;
    let block = group_channels * per_channel;
    filled_in_parallel(x.len(), block, |index, out| {
        let input = &x[index * block..(index + 1) * block];
        let (mean, variance) = mean_and_variance(input);
        let inverse = 1.0 / (variance + eps).sqrt();
        let first = (index % groups) * group_channels;
        let rows = out.chunks_mut(per_channel).zip(input.chunks(per_channel));
        for (c, (out, input)) in rows.enumerate() {
            let scale = gamma[first + c] * inverse;
            let shift = beta[first + c] - mean * scale;
            with_simd(|| affine(input, out, scale, shift, silu));
        }
    })
}

/// `out = x · scale + shift`, through SiLU if `silu`.
#[inline(always)]
fn affine(x: &[f32], out: &mut [MaybeUninit<f32>], scale: f32, shift: f32, silu: bool) {
    if silu {
        for (o, &v) in out.iter_mut().zip(x) {
            let y = v * scale + shift;
            o.write(y / (1.0 + exp(-y)));
        }
    } else {
        for (o, &v) in out.iter_mut().zip(x) {
            o.write(v * scale + shift);
        }
    }
}

/// Rows normalised together by one parallel task of [`layer_norm`].
const ROWS_PER_TASK: usize = 64;

/// `torch.nn.LayerNorm` over rows of `dim` (the last dimension).
pub(crate) fn layer_norm(x: &[f32], dim: usize, gamma: &[f32], beta: &[f32], eps: f32) -> Vec<f32> {
    filled_in_parallel(x.len(), ROWS_PER_TASK * dim, |index, out| {
        let start = index * ROWS_PER_TASK * dim;
        let input = &x[start..start + out.len()];
        for (out, row) in out.chunks_mut(dim).zip(input.chunks(dim)) {
            let (mean, variance) = mean_and_variance(row);
            let inverse = 1.0 / (variance + eps).sqrt();
            with_simd(|| {
                for (((o, &v), &g), &b) in out.iter_mut().zip(row).zip(gamma).zip(beta) {
                    o.write((v - mean) * inverse * g + b);
                }
            });
        }
    })
}

/// GEGLU: each row of `projected` [rows, 2·inner] is a value half and a gate half;
/// the result [rows, inner] is value · gelu(gate), gelu the exact (erf) one, as torch's default.
pub(crate) fn geglu(projected: &[f32], inner: usize) -> Vec<f32> {
    let rows = projected.len() / (2 * inner);
    filled_in_parallel(rows * inner, ROWS_PER_TASK * inner, |index, out| {
        let start = index * ROWS_PER_TASK * 2 * inner;
        let input = &projected[start..start + 2 * out.len()];
        for (out, row) in out.chunks_mut(inner).zip(input.chunks(2 * inner)) {
            let (value, gate) = row.split_at(inner);
            with_simd(|| {
                for ((o, &v), &g) in out.iter_mut().zip(value).zip(gate) {
                    o.write(v * 0.5 * g * (1.0 + erf(g * std::f32::consts::FRAC_1_SQRT_2)));
                }
            });
        }
    })
}

/// Query rows one task of [`attention`] takes: their scores against every key (1.3 MB at
/// SV3D's top level, 64 × 5,184 f32) stay in the core's cache between the two products.
pub(crate) const QUERY_BLOCK: usize = 64;

/// Softmax attention of `q` [batch, queries, heads·dim] over `k` and `v` [batch, keys,
/// heads·dim], with torch's scale 1/√dim; the result [batch, queries, heads·dim]. Each task
/// takes [`QUERY_BLOCK`] queries of one head: their scores against every key by one matrix
/// product, each row's softmax in place (vectorised `exp`), and the output by a second product.
/// The heads are read and written in place through strides, so nothing is split or merged, and
/// each row's softmax sees all its keys at once, so no running rescale is needed.
pub(crate) fn attention(
    [q, k, v]: [&[f32]; 3],
    [batch, queries, keys, channels]: [usize; 4],
    heads: usize,
) -> Vec<f32> {
    let dim = channels / heads;
    let scale = 1.0 / (dim as f32).sqrt();
    let blocks = queries.div_ceil(QUERY_BLOCK);
    assert!(q.len() == batch * queries * channels && k.len() == batch * keys * channels);
    assert_eq!(v.len(), k.len());
    let len = batch * queries * channels;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    let target = SendPtr(out.as_mut_ptr());
    (0..batch * heads * blocks).into_par_iter().for_each_init(
        || vec![0f32; QUERY_BLOCK * keys],
        |scores, task| {
            let (item, head, block) = (
                task / (heads * blocks),
                task / blocks % heads,
                task % blocks,
            );
            // The whole pointer, not its field (which is not Sync), goes into the closure.
            let target = &target;
            let first = block * QUERY_BLOCK;
            let rows = QUERY_BLOCK.min(queries - first);
            let scores = &mut scores[..rows * keys];
            let at = (item * queries + first) * channels + head * dim;
            let kv_at = item * keys * channels + head * dim;
            // SAFETY: every matrix lies within its slice (the asserts above), and each task
            // writes its own rows × dim block of the output.
            unsafe {
                matmul(
                    [rows, keys, dim],
                    (scores.as_mut_ptr(), [1, keys]),
                    (q[at..].as_ptr(), [1, channels]),
                    (k[kv_at..].as_ptr(), [channels, 1]),
                );
            }
            let mut sums = [0f32; QUERY_BLOCK];
            for (row, sum) in scores.chunks_mut(keys).zip(&mut sums) {
                with_simd(|| *sum = softmax_numerators(row, scale));
            }
            // SAFETY: as above.
            unsafe {
                let out = target.0.add(at);
                matmul(
                    [rows, dim, keys],
                    (out, [1, channels]),
                    (scores.as_ptr(), [1, keys]),
                    (v[kv_at..].as_ptr(), [1, channels]),
                );
                for (r, sum) in sums[..rows].iter().enumerate() {
                    let row = std::slice::from_raw_parts_mut(out.add(r * channels), dim);
                    row.iter_mut().for_each(|o| *o /= sum);
                }
            }
        },
    );
    // SAFETY: the tasks wrote every block of every row.
    unsafe { out.set_len(len) };
    out
}

/// A row of scores replaced by exp(scale · (score − max)), the numerators of its softmax;
/// returns their sum.
#[inline(always)]
fn softmax_numerators(row: &mut [f32], scale: f32) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; SUM_LANES];
    let mut chunks = row.chunks_exact(SUM_LANES);
    for chunk in &mut chunks {
        for (lane, &s) in lanes.iter_mut().zip(chunk) {
            *lane = lane.max(s);
        }
    }
    let max = chunks
        .remainder()
        .iter()
        .chain(&lanes)
        .fold(f32::NEG_INFINITY, |m, &s| m.max(s));
    let mut sums = [0f32; SUM_LANES];
    let mut chunks = row.chunks_exact_mut(SUM_LANES);
    for chunk in &mut chunks {
        for (sum, s) in sums.iter_mut().zip(chunk) {
            *s = exp(scale * (*s - max));
            *sum += *s;
        }
    }
    let mut tail = 0.0;
    for s in chunks.into_remainder() {
        *s = exp(scale * (*s - max));
        tail += *s;
    }
    sums.iter().sum::<f32>() + tail
}

/// eˣ for f32 without a library call, so loops over it vectorise: x = n·ln 2 + r with
/// |r| ≤ ln 2 / 2, and eʳ by Cephes' `expf` polynomial (relative error about 2·10⁻⁷). Below
/// −87.3 the result is about 10⁻³⁸ rather than 0 or a subnormal; above 88.3, about 2·10³⁸.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.3, 88.3);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let er = p * r * r + r + 1.0;
    er * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// erf(x) by Abramowitz and Stegun's 7.1.26 (absolute error 1.5·10⁻⁷, 5·10⁻⁷ in f32), built on
/// [`exp`] so that it vectorises too.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = ((((1.061_405_4 * t - 1.453_152_1) * t + 1.421_413_8) * t - 0.284_496_74) * t
        + 0.254_829_6)
        * t;
    (1.0 - poly * exp(-a * a)).copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_erf_match_the_exact_ones() {
        let mut worst_exp = 0f64;
        let mut worst_erf = 0f64;
        for i in -40_000..=40_000 {
            let x = i as f32 * 0.002;
            let exact = (x as f64).exp();
            worst_exp = worst_exp.max(((exp(x) as f64 - exact) / exact).abs());
            let x = x / 20.0;
            worst_erf = worst_erf.max((erf(x) as f64 - erf_series(x as f64)).abs());
        }
        assert!(worst_exp < 4e-7, "exp: relative error {worst_exp}");
        // 1.5·10⁻⁷ from the approximation, the rest f32's rounding of 1 − poly·e^(−x²).
        assert!(worst_erf < 6e-7, "erf: absolute error {worst_erf}");
        // The clamps: finite at both ends, and tiny where eˣ underflows.
        assert!((0.0..1e-37).contains(&exp(-1000.0)) && exp(1000.0).is_finite());
        assert_eq!([erf(-50.0), erf(50.0)], [-1.0, 1.0]);
    }

    /// erf in f64 from its Taylor series (enough terms for |x| ≤ 4).
    fn erf_series(x: f64) -> f64 {
        let mut term = x;
        let mut sum = x;
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }
}
