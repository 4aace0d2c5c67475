//! The fused CPU kernel of the radiance MLPs ([`FusedMlp`]): both MLPs block by block through one
//! register-blocked GEMM, compiled per instruction set; the reference the GPU path is tested
//! against, and the Flex backend's implementation of [`RadianceMlpOps`].

use burn::backend::flex::FlexTensor;
use burn::backend::{Flex, TensorMetadata};
use rayon::prelude::*;

use super::{MAX_LOG_DENSITY, MlpDims, RadianceMlpOps};
use crate::ops::{flex_tensor, flex_values};
use crate::simd::{Isa, isa};

/// f32 lanes of an AVX-512 register: every width is padded to a multiple of it.
const LANES: usize = 16;
/// Samples per block (its activations, about 160 KiB, fit in L2).
const BLOCK: usize = 128;

fn pad(n: usize) -> usize {
    n.div_ceil(LANES) * LANES
}

/// A weight matrix [inputs][outputs], zero-padded to lane multiples, and its transpose.
struct Packed {
    rows: usize,
    cols: usize,
    w: Vec<f32>,
    t: Vec<f32>,
}

impl Packed {
    fn new(weights: &[f32], inputs: usize, outputs: usize) -> Packed {
        assert_eq!(weights.len(), inputs * outputs, "weights of the wrong size");
        let (rows, cols) = (pad(inputs), pad(outputs));
        let mut w = vec![0.0; rows * cols];
        let mut t = vec![0.0; rows * cols];
        for i in 0..inputs {
            for o in 0..outputs {
                w[i * cols + o] = weights[i * outputs + o];
                t[o * rows + i] = weights[i * outputs + o];
            }
        }
        Packed { rows, cols, w, t }
    }
}

/// The two MLPs with their weights packed for the kernel. Layers in order: density in (encoded →
/// hidden, ReLU), density out (hidden → geometry), colour in (SH + features → hidden, ReLU),
/// colour hidden (hidden → hidden, ReLU), colour out (hidden → 3, sigmoid); no biases.
pub struct FusedMlp {
    dims: MlpDims,
    layers: [Packed; 5],
}

/// One block's activations and gradients, padded: rows are samples.
struct Scratch {
    encoded: Vec<f32>,
    h1: Vec<f32>,
    geometry: Vec<f32>,
    x: Vec<f32>,
    a1: Vec<f32>,
    a2: Vec<f32>,
    c: Vec<f32>,
    d_c: Vec<f32>,
    d_wide: Vec<f32>,
    d_wide2: Vec<f32>,
    d_x: Vec<f32>,
    d_geometry: Vec<f32>,
    d_encoded: Vec<f32>,
}

impl Scratch {
    fn new(mlp: &FusedMlp) -> Scratch {
        let [l0, l1, l2, _, l4] = &mlp.layers;
        let rows = |w: usize| vec![0.0f32; BLOCK * w];
        Scratch {
            encoded: rows(l0.rows),
            h1: rows(l0.cols),
            geometry: rows(l1.cols),
            x: rows(l2.rows),
            a1: rows(l0.cols),
            a2: rows(l0.cols),
            c: rows(l4.cols),
            d_c: rows(l4.cols),
            d_wide: rows(l0.cols),
            d_wide2: rows(l0.cols),
            d_x: rows(l2.rows),
            d_geometry: rows(l1.cols),
            d_encoded: rows(l0.rows),
        }
    }
}

/// The weight gradients, padded like the weights.
struct WeightGrads([Vec<f32>; 5]);

impl WeightGrads {
    fn zero(mlp: &FusedMlp) -> WeightGrads {
        WeightGrads(mlp.layers.each_ref().map(|l| vec![0.0; l.rows * l.cols]))
    }

    fn add(mut self, other: WeightGrads) -> WeightGrads {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
        }
        self
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// c[R][W] (+)= a[R][k] · b[k][W], `a` strided (so it can be read transposed), `b` and `c` rows
/// `ldb` and `ldc` apart. The accumulators are R×W/16 vector registers.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn micro<const W: usize, const R: usize, const FMA: bool>(
    k: usize,
    a: &[f32],
    a_rs: usize,
    a_cs: usize,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    let mut acc = [[0.0f32; W]; R];
    if accumulate {
        for (r, row) in acc.iter_mut().enumerate() {
            row.copy_from_slice(&c[r * ldc..r * ldc + W]);
        }
    }
    // The loop's last reads are checked here once, not at every step.
    assert!(k > 0 && (k - 1) * ldb + W <= b.len() && (R - 1) * a_rs + (k - 1) * a_cs < a.len());
    let (a, b) = (a.as_ptr(), b.as_ptr());
    for kk in 0..k {
        // SAFETY: kk < k, so the row ends within `b` and the element lies within `a` (above).
        let b_row: [f32; W] = unsafe { *(b.add(kk * ldb) as *const [f32; W]) };
        for (r, row) in acc.iter_mut().enumerate() {
            let x = unsafe { *a.add(r * a_rs + kk * a_cs) };
            for (v, w) in row.iter_mut().zip(&b_row) {
                *v = if FMA { x.mul_add(*w, *v) } else { *v + x * w };
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        c[r * ldc..r * ldc + W].copy_from_slice(row);
    }
}

/// c[m][n] (+)= a[m][k] · b[k][n] for m a multiple of 8 and n of 16; `a` strided.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn gemm<const FMA: bool>(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    a_rs: usize,
    a_cs: usize,
    b: &[f32],
    c: &mut [f32],
    accumulate: bool,
) {
    let mut col = 0;
    while col < n {
        let width = match n - col {
            64.. => 64,
            32.. => 32,
            _ => 16,
        };
        let (b, c) = (&b[col..], &mut c[col..]);
        // Plain loops, not closures: a closure is its own function, compiled without the
        // caller's target features.
        match width {
            64 => {
                for r in (0..m).step_by(4) {
                    let c = &mut c[r * n..];
                    micro::<64, 4, FMA>(k, &a[r * a_rs..], a_rs, a_cs, b, n, c, n, accumulate);
                }
            }
            32 => {
                for r in (0..m).step_by(8) {
                    let c = &mut c[r * n..];
                    micro::<32, 8, FMA>(k, &a[r * a_rs..], a_rs, a_cs, b, n, c, n, accumulate);
                }
            }
            _ => {
                for r in (0..m).step_by(8) {
                    let c = &mut c[r * n..];
                    micro::<16, 8, FMA>(k, &a[r * a_rs..], a_rs, a_cs, b, n, c, n, accumulate);
                }
            }
        }
        col += width;
    }
}

#[inline(always)]
fn relu_in_place(v: &mut [f32]) {
    v.iter_mut().for_each(|x| *x = x.max(0.0));
}

/// Zeroes the gradient where the ReLU's output was zero.
#[inline(always)]
fn relu_mask(grad: &mut [f32], activation: &[f32]) {
    grad.iter_mut()
        .zip(activation)
        .for_each(|(g, a)| *g = if *a > 0.0 { *g } else { 0.0 });
}

impl FusedMlp {
    /// `weights` in layer order, each [inputs][outputs] row-major (burn's `Linear` layout).
    pub fn new(dims: MlpDims, weights: [&[f32]; 5]) -> FusedMlp {
        let shapes = dims.layers();
        let layers = [0, 1, 2, 3, 4].map(|l| Packed::new(weights[l], shapes[l].0, shapes[l].1));
        FusedMlp { dims, layers }
    }

    /// One block's forward into `s`, rows past `count` zero.
    #[inline(always)]
    fn forward_block<const FMA: bool>(
        &self,
        s: &mut Scratch,
        encoded: &[f32],
        sh: &[f32],
        count: usize,
    ) {
        let d = self.dims;
        let [l0, l1, l2, l3, l4] = &self.layers;
        for r in 0..BLOCK {
            let row = &mut s.encoded[r * l0.rows..r * l0.rows + d.encoded];
            if r < count {
                row.copy_from_slice(&encoded[r * d.encoded..(r + 1) * d.encoded]);
            } else {
                row.fill(0.0);
            }
        }
        gemm::<FMA>(
            BLOCK, l0.rows, l0.cols, &s.encoded, l0.rows, 1, &l0.w, &mut s.h1, false,
        );
        relu_in_place(&mut s.h1);
        gemm::<FMA>(
            BLOCK,
            l1.rows,
            l1.cols,
            &s.h1,
            l1.rows,
            1,
            &l1.w,
            &mut s.geometry,
            false,
        );
        for r in 0..BLOCK {
            let x = &mut s.x[r * l2.rows..(r + 1) * l2.rows];
            if r < count {
                x[..d.sh].copy_from_slice(&sh[r * d.sh..(r + 1) * d.sh]);
            } else {
                x[..d.sh].fill(0.0);
            }
            x[d.sh..d.colour_in()]
                .copy_from_slice(&s.geometry[r * l1.cols + 1..r * l1.cols + d.geometry]);
        }
        gemm::<FMA>(
            BLOCK, l2.rows, l2.cols, &s.x, l2.rows, 1, &l2.w, &mut s.a1, false,
        );
        relu_in_place(&mut s.a1);
        gemm::<FMA>(
            BLOCK, l3.rows, l3.cols, &s.a1, l3.rows, 1, &l3.w, &mut s.a2, false,
        );
        relu_in_place(&mut s.a2);
        gemm::<FMA>(
            BLOCK, l4.rows, l4.cols, &s.a2, l4.rows, 1, &l4.w, &mut s.c, false,
        );
    }

    /// One block's backward from `grad_out` [count][4] (σ, r, g, b): the encoding's gradient in
    /// `s.d_encoded`, the weights' added to `grads`.
    #[inline(always)]
    fn backward_block<const FMA: bool>(
        &self,
        s: &mut Scratch,
        grads: &mut WeightGrads,
        grad_out: &[f32],
        count: usize,
    ) {
        let d = self.dims;
        let [l0, l1, l2, l3, l4] = &self.layers;
        let [g0, g1, g2, g3, g4] = &mut grads.0;
        for r in 0..BLOCK {
            let dc = &mut s.d_c[r * l4.cols..r * l4.cols + 3];
            for (k, v) in dc.iter_mut().enumerate() {
                *v = if r < count {
                    let y = sigmoid(s.c[r * l4.cols + k]);
                    grad_out[r * 4 + 1 + k] * y * (1.0 - y)
                } else {
                    0.0
                };
            }
        }
        let b = BLOCK;
        gemm::<FMA>(l4.rows, b, l4.cols, &s.a2, 1, l4.rows, &s.d_c, g4, true);
        gemm::<FMA>(
            b,
            l4.cols,
            l4.rows,
            &s.d_c,
            l4.cols,
            1,
            &l4.t,
            &mut s.d_wide,
            false,
        );
        relu_mask(&mut s.d_wide, &s.a2);
        gemm::<FMA>(l3.rows, b, l3.cols, &s.a1, 1, l3.rows, &s.d_wide, g3, true);
        gemm::<FMA>(
            b,
            l3.cols,
            l3.rows,
            &s.d_wide,
            l3.cols,
            1,
            &l3.t,
            &mut s.d_wide2,
            false,
        );
        relu_mask(&mut s.d_wide2, &s.a1);
        gemm::<FMA>(l2.rows, b, l2.cols, &s.x, 1, l2.rows, &s.d_wide2, g2, true);
        gemm::<FMA>(
            b, l2.cols, l2.rows, &s.d_wide2, l2.cols, 1, &l2.t, &mut s.d_x, false,
        );
        for r in 0..BLOCK {
            let dg = &mut s.d_geometry[r * l1.cols..(r + 1) * l1.cols];
            let log_density = s.geometry[r * l1.cols];
            dg[0] = if r < count && log_density < MAX_LOG_DENSITY {
                grad_out[r * 4] * log_density.exp()
            } else {
                0.0
            };
            dg[1..d.geometry]
                .copy_from_slice(&s.d_x[r * l2.rows + d.sh..r * l2.rows + d.colour_in()]);
        }
        gemm::<FMA>(
            l1.rows,
            b,
            l1.cols,
            &s.h1,
            1,
            l1.rows,
            &s.d_geometry,
            g1,
            true,
        );
        gemm::<FMA>(
            b,
            l1.cols,
            l1.rows,
            &s.d_geometry,
            l1.cols,
            1,
            &l1.t,
            &mut s.d_wide,
            false,
        );
        relu_mask(&mut s.d_wide, &s.h1);
        gemm::<FMA>(
            l0.rows, b, l0.cols, &s.encoded, 1, l0.rows, &s.d_wide, g0, true,
        );
        gemm::<FMA>(
            b,
            l0.cols,
            l0.rows,
            &s.d_wide,
            l0.cols,
            1,
            &l0.t,
            &mut s.d_encoded,
            false,
        );
    }

    /// (σ, r, g, b) [n][4] of `encoded` [n][encoded] seen along `sh` [n][sh].
    pub fn forward(&self, encoded: &[f32], sh: &[f32]) -> Vec<f32> {
        self.forward_on(isa(), encoded, sh)
    }

    /// [`FusedMlp::forward`] compiled for `isa`.
    fn forward_on(&self, isa: Isa, encoded: &[f32], sh: &[f32]) -> Vec<f32> {
        let d = self.dims;
        let n = encoded.len() / d.encoded;
        assert_eq!(sh.len(), n * d.sh, "one SH row per sample");
        let mut out = vec![0.0f32; n * 4];
        let (gc, cc) = (self.layers[1].cols, self.layers[4].cols);
        out.par_chunks_mut(BLOCK * 4).enumerate().for_each_init(
            || Scratch::new(self),
            |s, (block, out)| {
                let (start, count) = (block * BLOCK, out.len() / 4);
                let enc = &encoded[start * d.encoded..(start + count) * d.encoded];
                let sh = &sh[start * d.sh..(start + count) * d.sh];
                self.dispatch_forward(isa, s, enc, sh, count);
                for (r, o) in out.chunks_exact_mut(4).enumerate() {
                    o[0] = s.geometry[r * gc].min(MAX_LOG_DENSITY).exp();
                    for k in 0..3 {
                        o[1 + k] = sigmoid(s.c[r * cc + k]);
                    }
                }
            },
        );
        out
    }

    /// From the gradient of [`FusedMlp::forward`]'s output: the gradient of `encoded` [n][encoded]
    /// and of each layer's weights [inputs][outputs].
    pub fn backward(
        &self,
        encoded: &[f32],
        sh: &[f32],
        grad_out: &[f32],
    ) -> (Vec<f32>, [Vec<f32>; 5]) {
        self.backward_on(isa(), encoded, sh, grad_out)
    }

    /// [`FusedMlp::backward`] compiled for `isa`.
    fn backward_on(
        &self,
        isa: Isa,
        encoded: &[f32],
        sh: &[f32],
        grad_out: &[f32],
    ) -> (Vec<f32>, [Vec<f32>; 5]) {
        let d = self.dims;
        let n = encoded.len() / d.encoded;
        assert_eq!(grad_out.len(), n * 4, "one gradient row per sample");
        let mut d_encoded = vec![0.0f32; n * d.encoded];
        let e = self.layers[0].rows;
        let padded = d_encoded
            .par_chunks_mut(BLOCK * d.encoded)
            .enumerate()
            .fold(
                || (Scratch::new(self), WeightGrads::zero(self)),
                |(mut s, mut grads), (block, out)| {
                    let (start, count) = (block * BLOCK, out.len() / d.encoded);
                    let enc = &encoded[start * d.encoded..(start + count) * d.encoded];
                    let sh = &sh[start * d.sh..(start + count) * d.sh];
                    let g = &grad_out[start * 4..(start + count) * 4];
                    self.dispatch_forward(isa, &mut s, enc, sh, count);
                    self.dispatch_backward(isa, &mut s, &mut grads, g, count);
                    for (r, o) in out.chunks_exact_mut(d.encoded).enumerate() {
                        o.copy_from_slice(&s.d_encoded[r * e..r * e + d.encoded]);
                    }
                    (s, grads)
                },
            )
            .map(|(_, grads)| grads)
            .reduce(|| WeightGrads::zero(self), WeightGrads::add);
        let shapes = d.layers();
        let weights = std::array::from_fn(|l| {
            let ((inputs, outputs), cols) = (shapes[l], self.layers[l].cols);
            let g = &padded.0[l];
            let mut unpadded = Vec::with_capacity(inputs * outputs);
            for row in g.chunks_exact(cols).take(inputs) {
                unpadded.extend_from_slice(&row[..outputs]);
            }
            unpadded
        });
        (d_encoded, weights)
    }

    fn dispatch_forward(&self, isa: Isa, s: &mut Scratch, enc: &[f32], sh: &[f32], count: usize) {
        match isa {
            // SAFETY: `isa()` found these instruction sets on this CPU.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { self.forward_avx512(s, enc, sh, count) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { self.forward_avx2(s, enc, sh, count) },
            Isa::Plain => self.forward_block::<false>(s, enc, sh, count),
        }
    }

    fn dispatch_backward(
        &self,
        isa: Isa,
        s: &mut Scratch,
        grads: &mut WeightGrads,
        grad_out: &[f32],
        count: usize,
    ) {
        match isa {
            // SAFETY: `isa()` found these instruction sets on this CPU.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { self.backward_avx512(s, grads, grad_out, count) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { self.backward_avx2(s, grads, grad_out, count) },
            Isa::Plain => self.backward_block::<false>(s, grads, grad_out, count),
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    unsafe fn forward_avx512(&self, s: &mut Scratch, enc: &[f32], sh: &[f32], count: usize) {
        self.forward_block::<true>(s, enc, sh, count)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn forward_avx2(&self, s: &mut Scratch, enc: &[f32], sh: &[f32], count: usize) {
        self.forward_block::<true>(s, enc, sh, count)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    unsafe fn backward_avx512(
        &self,
        s: &mut Scratch,
        grads: &mut WeightGrads,
        grad_out: &[f32],
        count: usize,
    ) {
        self.backward_block::<true>(s, grads, grad_out, count)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn backward_avx2(
        &self,
        s: &mut Scratch,
        grads: &mut WeightGrads,
        grad_out: &[f32],
        count: usize,
    ) {
        self.backward_block::<true>(s, grads, grad_out, count)
    }
}

/// The packed MLP and the values of `encoded` and `sh` of Flex tensors.
fn flex_mlp(
    encoded: &FlexTensor,
    sh: &FlexTensor,
    weights: [FlexTensor; 5],
) -> (FusedMlp, FlexTensor, FlexTensor) {
    let dims = MlpDims {
        encoded: encoded.shape()[1],
        hidden: weights[0].shape()[1],
        geometry: weights[1].shape()[1],
        sh: sh.shape()[1],
    };
    let weights = weights.map(|w| w.to_contiguous());
    let mlp = FusedMlp::new(dims, weights.each_ref().map(flex_values));
    (mlp, encoded.to_contiguous(), sh.to_contiguous())
}

impl RadianceMlpOps for Flex {
    fn radiance_mlp(
        encoded: FlexTensor,
        sh: FlexTensor,
        density_in: FlexTensor,
        density_out: FlexTensor,
        colour_in: FlexTensor,
        colour_hidden: FlexTensor,
        colour_out: FlexTensor,
    ) -> FlexTensor {
        let weights = [
            density_in,
            density_out,
            colour_in,
            colour_hidden,
            colour_out,
        ];
        let (mlp, encoded, sh) = flex_mlp(&encoded, &sh, weights);
        let out = mlp.forward(flex_values(&encoded), flex_values(&sh));
        let n = out.len() / 4;
        flex_tensor(out, [n, 4])
    }

    fn radiance_mlp_backward(
        encoded: FlexTensor,
        sh: FlexTensor,
        density_in: FlexTensor,
        density_out: FlexTensor,
        colour_in: FlexTensor,
        colour_hidden: FlexTensor,
        colour_out: FlexTensor,
        grad_out: FlexTensor,
    ) -> (
        FlexTensor,
        FlexTensor,
        FlexTensor,
        FlexTensor,
        FlexTensor,
        FlexTensor,
    ) {
        let weights = [
            density_in,
            density_out,
            colour_in,
            colour_hidden,
            colour_out,
        ];
        let (mlp, encoded, sh) = flex_mlp(&encoded, &sh, weights);
        let grad_out = grad_out.to_contiguous();
        let (d_encoded, d_weights) = mlp.backward(
            flex_values(&encoded),
            flex_values(&sh),
            flex_values(&grad_out),
        );
        let n = d_encoded.len() / mlp.dims.encoded;
        let shapes = mlp.dims.layers();
        let [d0, d1, d2, d3, d4] = d_weights
            .into_iter()
            .zip(shapes)
            .map(|(d, (inputs, outputs))| flex_tensor(d, [inputs, outputs]))
            .collect::<Vec<_>>()
            .try_into()
            .expect("five layers");
        (
            flex_tensor(d_encoded, [n, mlp.dims.encoded]),
            d0,
            d1,
            d2,
            d3,
            d4,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::mlp::tests::{DIMS, inputs, worst};

    /// Every instruction set this CPU has gives the plain build's values (up to the rounding of
    /// fused multiply-adds): the wider builds are the same code, compiled differently.
    #[test]
    fn every_instruction_set_gives_the_same_values() {
        let inputs = inputs(3);
        let w: Vec<&[f32]> = inputs.weights.iter().map(Vec::as_slice).collect();
        let mlp = FusedMlp::new(DIMS, [w[0], w[1], w[2], w[3], w[4]]);
        let run = |isa: Isa| {
            let mut all = vec![mlp.forward_on(isa, &inputs.encoded, &inputs.sh)];
            let (d_encoded, d_weights) =
                mlp.backward_on(isa, &inputs.encoded, &inputs.sh, &inputs.upstream);
            all.push(d_encoded);
            all.extend(d_weights);
            all
        };
        let plain = run(Isa::Plain);
        #[cfg(target_arch = "x86_64")]
        for (isa, name, present) in [
            (
                Isa::Avx2,
                "AVX2",
                is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            ),
            (
                Isa::Avx512,
                "AVX-512",
                is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma"),
            ),
        ] {
            if !present {
                eprintln!("{name}: not on this CPU, not compared");
                continue;
            }
            let differences = worst(&run(isa), &plain);
            eprintln!("fused MLP, {name} against plain: {differences:?}");
            assert!(
                differences.iter().all(|d| *d <= 1e-5),
                "{name}: {differences:?}"
            );
        }
    }
}
