//! The PyTorch layers SV3D's and IS-Net's modules are made of, loaded by their checkpoint names and run with
//! burn's tensor ops. Weights keep PyTorch's layouts except where burn's op wants another.

use std::mem::MaybeUninit;

use burn::tensor::activation;
use burn::tensor::module::{conv2d, conv3d, layer_norm, linear};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, FloatDType, Tensor, TensorData};
use rayon::prelude::*;

use crate::fused::{self, host_values, on_host, through_host};
use crate::weights::Params;

/// `torch.nn.Linear`: `weight` [out, in], `bias` [out].
pub struct Linear {
    /// [in, out], as burn's `linear` takes it.
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
    d_out: usize,
}

impl Linear {
    pub fn load(p: &Params, d_in: usize, d_out: usize, bias: bool) -> Self {
        Self {
            weight: p.tensor("weight", [d_out, d_in]).transpose(),
            bias: bias.then(|| p.tensor("bias", [d_out])),
            d_out,
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        linear(x, self.weight.clone(), self.bias.clone())
    }

    /// [`Linear::forward`]'s output, planned.
    pub fn plan<const D: usize>(&self, plan: &mut TensorPlan, x: [usize; D]) -> [usize; D] {
        let mut out = x;
        out[D - 1] = self.d_out;
        plan.tensor("linear", &out)
    }
}

/// `torch.nn.Conv2d` with a square kernel: `weight` [out, in, k, k], `bias` [out].
pub struct Conv2d {
    weight: Tensor<4>,
    bias: Tensor<1>,
    c_out: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
}

impl Conv2d {
    pub fn load(
        p: &Params,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Self {
        Self {
            weight: p.tensor("weight", [c_out, c_in, kernel, kernel]),
            bias: p.tensor("bias", [c_out]),
            c_out,
            kernel,
            stride,
            padding,
            dilation: 1,
        }
    }

    /// [`Conv2d::forward`]'s output, planned (on a GPU burn's direct convolution allocates
    /// nothing else of that size).
    pub fn plan(&self, plan: &mut TensorPlan, [n, _, h, w]: [usize; 4]) -> [usize; 4] {
        let reach = self.dilation * (self.kernel - 1) + 1;
        let side = |s: usize| (s + 2 * self.padding - reach) / self.stride + 1;
        plan.tensor("conv2d", &[n, self.c_out, side(h), side(w)])
    }

    /// The same convolution with its taps `dilation` pixels apart (padding unchanged).
    pub fn dilated(self, dilation: usize) -> Self {
        Self { dilation, ..self }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_activated(x, false)
    }

    /// `relu(self.forward(x))`, fused into the convolution on the CPU.
    pub fn forward_relu(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_activated(x, true)
    }

    fn forward_activated(&self, x: Tensor<4>, relu: bool) -> Tensor<4> {
        if self.stride == 1 && on_host(&x) {
            return self.forward_cpu(x, relu);
        }
        let options = ConvOptions::new([self.stride; 2], [self.padding; 2], [self.dilation; 2], 1);
        let y = conv2d(x, self.weight.clone(), Some(self.bias.clone()), options);
        if relu { activation::relu(y) } else { y }
    }

    /// [`Conv2d::forward_activated`] on the CPU by [`conv2d_cpu`], one image at a time.
    fn forward_cpu(&self, x: Tensor<4>, relu: bool) -> Tensor<4> {
        let device = x.device();
        let [n, c_in, h, w] = x.dims();
        let x = host_values(x.into_data());
        // The weights leave the device once for the whole batch.
        let (weight, bias, shape) = self.host_weights(relu);
        let mut out = Vec::new();
        let mut spatial = [0, 0];
        for image in x.chunks(c_in * h * w) {
            let (y, size) = conv2d_cpu(&[(image, c_in)], [h, w], &weight, &bias, shape);
            spatial = size;
            if out.is_empty() {
                out = y;
            } else {
                out.extend_from_slice(&y);
            }
        }
        let dims = [n, shape.c_out, spatial[0], spatial[1]];
        Tensor::from_data(TensorData::new(out, dims), &device)
    }

    /// The convolution (stride 1), through ReLU if `relu`, of one image held on the host as
    /// channel groups (see [`conv2d_cpu`]): the output `[c_out, ho, wo]` and its dims.
    pub fn forward_host(
        &self,
        inputs: &[(&[f32], usize)],
        size: [usize; 2],
        relu: bool,
    ) -> (Vec<f32>, [usize; 3]) {
        let (weight, bias, shape) = self.host_weights(relu);
        let (out, [ho, wo]) = conv2d_cpu(inputs, size, &weight, &bias, shape);
        (out, [shape.c_out, ho, wo])
    }

    /// The weights and bias on the host, and what [`conv2d_cpu`] needs besides them.
    fn host_weights(&self, relu: bool) -> (Vec<f32>, Vec<f32>, CpuConvShape) {
        assert_eq!(self.stride, 1, "the host convolution has stride 1");
        let [c_out, _, kernel, _] = self.weight.dims();
        let shape = CpuConvShape {
            c_out,
            kernel,
            padding: self.padding,
            dilation: self.dilation,
            relu,
        };
        let weight = host_values(self.weight.clone().into_data());
        (weight, host_values(self.bias.clone().into_data()), shape)
    }
}

/// What a [`conv2d_cpu`] computes besides its weights: output channels, kernel side, padding,
/// dilation, and whether a ReLU follows.
#[derive(Clone, Copy)]
pub struct CpuConvShape {
    pub c_out: usize,
    pub kernel: usize,
    pub padding: usize,
    pub dilation: usize,
    pub relu: bool,
}

/// A stride-1 convolution of one image on the CPU, with its bias and, if `relu`, a ReLU
/// applied as each output is written (one pass over the output instead of three). The input
/// comes as channel groups to be concatenated, each `(values [c_k, h, w], c_k)`: IS-Net's
/// decoder convolves cat(upsampled, skip), and reading both in place saves writing the
/// concatenation. `weight` [c_out, Σ c_k, k, k]. 3×3 kernels without dilation, nearly all of
/// IS-Net's work, go through Winograd's F(4×4, 3×3); the others through tiled im2col. Returns
/// the output `[c_out, ho, wo]` and `[ho, wo]`.
pub fn conv2d_cpu(
    inputs: &[(&[f32], usize)],
    [h, w]: [usize; 2],
    weight: &[f32],
    bias: &[f32],
    shape: CpuConvShape,
) -> (Vec<f32>, [usize; 2]) {
    let conv = CpuConv {
        weight,
        bias,
        shape,
    };
    for &(values, channels) in inputs {
        assert_eq!(
            values.len(),
            channels * h * w,
            "a channel group of the wrong size"
        );
    }
    let padding = shape.padding;
    // Winograd's filter transform (4× the weights) pays off only over enough tiles.
    if shape.kernel == 3
        && shape.dilation == 1
        && (h + 2 * padding - 2) * (w + 2 * padding - 2) >= 32 * 32
    {
        conv.winograd(inputs, [h, w])
    } else {
        conv.im2col(inputs, [h, w])
    }
}

struct CpuConv<'a> {
    weight: &'a [f32],
    bias: &'a [f32],
    shape: CpuConvShape,
}

impl CpuConv<'_> {
    /// A biased sum as written out: through ReLU when the convolution has one.
    #[inline(always)]
    fn activate(&self, v: f32) -> f32 {
        if self.shape.relu { v.max(0.0) } else { v }
    }

    /// flex's generic convolution gathers the whole im2col matrix (nine times the input for 3×3)
    /// with per-element indexing, which took more time than the matrix products themselves in
    /// IS-Net. Here the input is padded once; the output is computed "wide" (as many columns as
    /// the padded input, the extra ones discarded), so each tap's input rows are contiguous runs
    /// of the padded planes, and im2col becomes memcpy of small column tiles that stay in cache.
    /// Each tile is one GEMM (gemm crate, the one flex uses), tiles in parallel with rayon.
    fn im2col(&self, inputs: &[(&[f32], usize)], [h, w]: [usize; 2]) -> (Vec<f32>, [usize; 2]) {
        let c_in = inputs.iter().map(|&(_, c)| c).sum::<usize>();
        let (c_out, kernel, padding, dilation) = (
            self.shape.c_out,
            self.shape.kernel,
            self.shape.padding,
            self.shape.dilation,
        );
        let (hp, wp) = (h + 2 * padding, w + 2 * padding);
        let reach = dilation * (kernel - 1);
        assert!(
            hp > reach && wp > reach,
            "the kernel is larger than the input"
        );
        let (ho, wo) = (hp - reach, wp - reach);
        let plane = hp * wp;
        let taps = kernel * kernel;
        let depth = c_in * taps;
        let cols = ho * wp;
        // Columns per tile: the tile's im2col block near 1 MiB, but wide enough for GEMM to be fast.
        let tile = ((1 << 18) / depth).clamp(128, 4096);
        let mut out = vec![0f32; c_out * ho * wo];
        let mut wide = vec![0f32; c_out * cols];
        // The last taps of the discarded columns reach `reach` values past the last plane.
        let mut padded = vec![0f32; c_in * plane + reach];
        let planes = inputs.iter().flat_map(|&(values, _)| values.chunks(h * w));
        padded[..c_in * plane]
            .par_chunks_mut(plane)
            .zip(planes.collect::<Vec<_>>())
            .for_each(|(dst, src)| {
                for (y, row) in src.chunks(w).enumerate() {
                    dst[(y + padding) * wp + padding..][..w].copy_from_slice(row);
                }
            });
        let dst = SendPtr(wide.as_mut_ptr());
        // Each worker reuses its block: every value is written before it is read.
        (0..cols.div_ceil(tile))
            .into_par_iter()
            .for_each_init(Vec::new, |block, t| {
                let (start, width) = (t * tile, tile.min(cols - t * tile));
                block.resize(depth * width, 0f32);
                for (r, row) in block.chunks_mut(width).enumerate() {
                    let (c, tap) = (r / taps, r % taps);
                    let offset =
                        c * plane + (tap / kernel) * dilation * wp + (tap % kernel) * dilation;
                    row.copy_from_slice(&padded[offset + start..][..width]);
                }
                let dst = &dst;
                // SAFETY: every tile writes only its own columns [start, start + width) of each
                // of the `c_out` rows of `wide`, which outlives the parallel loop.
                unsafe {
                    matmul(
                        [c_out, width, depth],
                        (dst.0.add(start), [1, cols]),
                        (self.weight.as_ptr(), [1, depth]),
                        (block.as_ptr(), [1, width]),
                    );
                }
            });
        out.par_chunks_mut(ho * wo)
            .enumerate()
            .for_each(|(c, dst)| {
                let src = &wide[c * cols..][..cols];
                for (y, row) in dst.chunks_mut(wo).enumerate() {
                    for (d, &s) in row.iter_mut().zip(&src[y * wp..][..wo]) {
                        *d = self.activate(s + self.bias[c]);
                    }
                }
            });
        (out, [ho, wo])
    }

    /// Winograd's minimal filtering F(4×4, 3×3) (Lavin & Gray 2016, interpolation points 0, ±1,
    /// ±2): each 4×4 block of outputs comes from a 6×6 input patch d as Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A,
    /// so the sums over input channels become 36 independent GEMMs of (c_out × c_in)·(c_in ×
    /// tiles) with 4× fewer multiplications than direct convolution. The input is copied
    /// channels-last, so the transforms run on 8 channels at a time in SIMD lanes; tiles are
    /// processed in parallel batches whose transformed inputs stay in cache.
    fn winograd(&self, inputs: &[(&[f32], usize)], [h, w]: [usize; 2]) -> (Vec<f32>, [usize; 2]) {
        let c_in = inputs.iter().map(|&(_, c)| c).sum::<usize>();
        let (c_out, pad) = (self.shape.c_out, self.shape.padding);
        assert!(
            h + 2 * pad > 2 && w + 2 * pad > 2,
            "the kernel is larger than the input"
        );
        let (ho, wo) = (h + 2 * pad - 2, w + 2 * pad - 2);
        let (th, tw) = (ho.div_ceil(4), wo.div_ceil(4));
        let (hp, wp) = (th * 4 + 2, tw * 4 + 2);
        // Channel counts padded with zeros to whole lanes.
        let (ci, co) = (c_in.next_multiple_of(LANES), c_out.next_multiple_of(LANES));
        let filters = self.winograd_filters(c_in, [ci, co]);
        let tiles = th * tw;
        // Tiles per batch: the batch's transformed inputs and products near 1 MiB each, and
        // at least two batches per thread when the image allows.
        let batch = ((1 << 18) / (36 * ci.max(co)))
            .min(tiles.div_ceil(2 * rayon::current_num_threads()))
            .clamp(8, 256);
        let tiling = Tiling {
            ci,
            co,
            tw,
            wp,
            ho,
            wo,
        };
        // Bias per lane group, zero in the padding channels.
        let mut bias = self.bias.to_vec();
        bias.resize(co, 0.0);
        // Channels-last and zero-padded: padded[(y · wp + x) · ci + i], each channel group
        // moved into its place.
        let mut padded = vec![0f32; hp * wp * ci];
        padded
            .par_chunks_mut(wp * ci)
            .skip(pad)
            .take(h)
            .enumerate()
            .for_each(|(y, row)| {
                let mut offset = pad * ci;
                for &(values, channels) in inputs {
                    let dst = as_uninit(&mut row[offset..]);
                    transpose(&values[y * w..], h * w, dst, ci, [channels, w]);
                    offset += channels;
                }
            });
        // The outputs channels-last, as the transforms make them, before the final transpose;
        // never zeroed, as every value is written before it is read.
        let mut staged = Vec::<f32>::with_capacity(ho * wo * co);
        let staging = SendPtr(staged.as_mut_ptr());
        // Each worker reuses its two batch buffers: every value is written before it is read.
        let buffers = || (Vec::new(), Vec::new());
        (0..tiles.div_ceil(batch)).into_par_iter().for_each_init(
            buffers,
            |(v, products), chunk| {
                let (start, count) = (chunk * batch, batch.min(tiles - chunk * batch));
                // V[e][k][i]: tile k's patch in channel i, transformed, for patch element e.
                v.resize(36 * count * ci, 0f32);
                with_simd(|| tiling.transform_inputs(&padded, v, start, count));
                // P[e][k][o] = Σ_i U[e][i][o] V[e][k][i].
                products.resize(36 * count * co, 0f32);
                for e in 0..36 {
                    // SAFETY: in-bounds matrices of the shapes and strides given.
                    unsafe {
                        matmul(
                            [co, count, ci],
                            (products.as_mut_ptr().add(e * count * co), [co, 1]),
                            (filters.as_ptr().add(e * ci * co), [co, 1]),
                            (v.as_ptr().add(e * count * ci), [ci, 1]),
                        );
                    }
                }
                let staging = &staging;
                with_simd(|| {
                    self.transform_outputs(&tiling, &bias, products, staging, [start, count])
                });
            },
        );
        // SAFETY: the tiles cover the image, and each wrote all `co` channels of its pixels.
        unsafe { staged.set_len(ho * wo * co) };
        let mut out = Vec::<f32>::with_capacity(c_out * ho * wo);
        out.spare_capacity_mut()[..c_out * ho * wo]
            .par_chunks_mut(TRANSPOSE_BLOCK * ho * wo)
            .enumerate()
            .for_each(|(block, planes)| {
                let o = block * TRANSPOSE_BLOCK;
                let channels = TRANSPOSE_BLOCK.min(c_out - o);
                transpose(&staged[o..], co, planes, ho * wo, [ho * wo, channels]);
            });
        // SAFETY: the transpose wrote every output channel's plane.
        unsafe { out.set_len(c_out * ho * wo) };
        (out, [ho, wo])
    }

    /// The outputs of `count` tiles from `start`, from their products P[e][k][o]: Aᵀ P A,
    /// biased and activated, written channels-last to `staged`.
    #[inline(always)]
    fn transform_outputs(
        &self,
        tiling: &Tiling,
        bias: &[f32],
        products: &[f32],
        staged: &SendPtr,
        [start, count]: [usize; 2],
    ) {
        let Tiling { co, tw, ho, wo, .. } = *tiling;
        for k in 0..count {
            let (ty, tx) = ((start + k) / tw, (start + k) % tw);
            let (rows, cols) = ((ho - ty * 4).min(4), (wo - tx * 4).min(4));
            for o in (0..co).step_by(LANES) {
                let mut m = [[[0f32; LANES]; 6]; 6];
                for (e, value) in m.iter_mut().flatten().enumerate() {
                    *value = lanes(&products[(e * count + k) * co + o..]);
                }
                let mut y = [[[0f32; LANES]; 4]; 4];
                transform_2d(&m, &mut y, winograd_output);
                let bias = lanes(&bias[o..]);
                for (r, row) in y.iter().enumerate().take(rows) {
                    for (s, value) in row.iter().enumerate().take(cols) {
                        let mut v = [0f32; LANES];
                        for l in 0..LANES {
                            v[l] = self.activate(value[l] + bias[l]);
                        }
                        let at = ((ty * 4 + r) * wo + tx * 4 + s) * co + o;
                        // SAFETY: each tile writes only its own 4 × 4 pixels (clipped to the
                        // image) of `staged`, which outlives the parallel loop.
                        unsafe { staged.0.add(at).cast::<Lanes>().write_unaligned(v) };
                    }
                }
            }
        }
    }

    /// U[e][i][o] = (G g Gᵀ)[e] for each 3×3 filter g (output o, input i): one column-major
    /// `co` × `ci` matrix per patch element, zero in the padding channels.
    fn winograd_filters(&self, c_in: usize, [ci, co]: [usize; 2]) -> Vec<f32> {
        const G: [[f32; 3]; 6] = [
            [1.0 / 4.0, 0.0, 0.0],
            [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
            [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
            [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
            [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
            [0.0, 0.0, 1.0],
        ];
        let mut u = vec![0f32; 36 * ci * co];
        let filters = SendPtr(u.as_mut_ptr());
        // Each input channel's 36 × c_out values are gathered first, then written as 36
        // contiguous runs: written in place they were scattered 36 · ci · co floats apart.
        let column = || vec![0f32; 36 * self.shape.c_out];
        (0..c_in)
            .into_par_iter()
            .for_each_init(column, |column, i| {
                let filters = &filters;
                for o in 0..self.shape.c_out {
                    let g = &self.weight[(o * c_in + i) * 9..][..9];
                    let mut gg = [[0f32; 3]; 6];
                    for (r, row) in gg.iter_mut().enumerate() {
                        for (s, value) in row.iter_mut().enumerate() {
                            *value = G[r][0] * g[s] + G[r][1] * g[3 + s] + G[r][2] * g[6 + s];
                        }
                    }
                    for e in 0..36 {
                        let (r, s) = (e / 6, e % 6);
                        column[e * self.shape.c_out + o] =
                            gg[r][0] * G[s][0] + gg[r][1] * G[s][1] + gg[r][2] * G[s][2];
                    }
                }
                for (e, run) in column.chunks(self.shape.c_out).enumerate() {
                    // SAFETY: each `i` writes its own runs of `u`, which outlives the loop.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            run.as_ptr(),
                            filters.0.add((e * ci + i) * co),
                            self.shape.c_out,
                        )
                    };
                }
            });
        u
    }
}

/// The geometry of a Winograd convolution: channel counts padded to whole lanes (`ci`, `co`),
/// tiles per row, the padded input's width, the output's size.
#[derive(Clone, Copy)]
struct Tiling {
    ci: usize,
    co: usize,
    tw: usize,
    wp: usize,
    ho: usize,
    wo: usize,
}

impl Tiling {
    /// V[e][k][i] for `count` tiles from `start`: each tile's 6×6 patch of the channels-last
    /// `padded` input, Bᵀ d B, a lane group of channels at a time.
    #[inline(always)]
    fn transform_inputs(&self, padded: &[f32], v: &mut [f32], start: usize, count: usize) {
        let Tiling { ci, tw, wp, .. } = *self;
        for k in 0..count {
            let (ty, tx) = ((start + k) / tw, (start + k) % tw);
            let corner = (ty * 4 * wp + tx * 4) * ci;
            for i in (0..ci).step_by(LANES) {
                let mut d = [[[0f32; LANES]; 6]; 6];
                for (r, row) in d.iter_mut().enumerate() {
                    for (s, value) in row.iter_mut().enumerate() {
                        *value = lanes(&padded[corner + (r * wp + s) * ci + i..]);
                    }
                }
                let mut t = [[[0f32; LANES]; 6]; 6];
                transform_2d(&d, &mut t, winograd_input);
                for (e, value) in t.iter().flatten().enumerate() {
                    v[(e * count + k) * ci + i..][..LANES].copy_from_slice(value);
                }
            }
        }
    }
}

/// Side of the square blocks [`transpose`] moves at a time: 16 floats are one cache line.
const TRANSPOSE_BLOCK: usize = 16;

/// `dst[c · dst_stride + r] = src[r · src_stride + c]` for `r < rows`, `c < cols` (`dst` may be
/// uninitialised: those cells are written, and no others read or written). Going block
/// by block keeps both sides' cache lines in use: a plain loop over one side reads or writes the
/// other a whole line per float (it was a seventh of IS-Net's time). Whole 8×8 blocks move in
/// AVX registers where the CPU has them.
fn transpose(
    src: &[f32],
    src_stride: usize,
    dst: &mut [MaybeUninit<f32>],
    dst_stride: usize,
    [rows, cols]: [usize; 2],
) {
    if rows == 0 || cols == 0 {
        return;
    }
    // The largest index on each side, checked once here rather than per float.
    assert!(
        (rows - 1) * src_stride + cols <= src.len() && (cols - 1) * dst_stride + rows <= dst.len(),
        "transpose out of bounds"
    );
    #[cfg(target_arch = "x86_64")]
    let avx = is_x86_feature_detected!("avx");
    let (src, dst) = (src.as_ptr(), dst.as_mut_ptr().cast::<f32>());
    for r0 in (0..rows).step_by(TRANSPOSE_BLOCK) {
        let r1 = (r0 + TRANSPOSE_BLOCK).min(rows);
        for c0 in (0..cols).step_by(TRANSPOSE_BLOCK) {
            let c1 = (c0 + TRANSPOSE_BLOCK).min(cols);
            for r in (r0..r1).step_by(8) {
                for c in (c0..c1).step_by(8) {
                    // SAFETY: every index is below rows × cols, within the bounds asserted above.
                    unsafe {
                        let (s, d) = (src.add(r * src_stride + c), dst.add(c * dst_stride + r));
                        #[cfg(target_arch = "x86_64")]
                        if avx && r + 8 <= r1 && c + 8 <= c1 {
                            transpose_8x8_avx(s, src_stride, d, dst_stride);
                            continue;
                        }
                        for i in 0..(r1 - r).min(8) {
                            for j in 0..(c1 - c).min(8) {
                                *d.add(j * dst_stride + i) = *s.add(i * src_stride + j);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `values` as memory that [`transpose`] may write; it writes only initialised floats.
fn as_uninit(values: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: MaybeUninit<f32> has f32's layout, and nothing uninitialised is written through it.
    unsafe { &mut *(values as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

/// One 8×8 block of [`transpose`]: eight rows loaded, interleaved in three rounds of shuffles
/// (pairs, quads, 128-bit halves), stored as eight columns.
///
/// # Safety
/// 8 rows of 8 floats at `src` (stride `ss`) readable, and likewise at `dst` (stride `ds`)
/// writable; the CPU has AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn transpose_8x8_avx(src: *const f32, ss: usize, dst: *mut f32, ds: usize) {
    use std::arch::x86_64::*;
    // SAFETY: the caller's bounds.
    unsafe {
        let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(src.add(i * ss)));
        let t: [__m256; 8] = std::array::from_fn(|i| {
            let (a, b) = (r[i / 2 * 2], r[i / 2 * 2 + 1]);
            if i % 2 == 0 {
                _mm256_unpacklo_ps(a, b)
            } else {
                _mm256_unpackhi_ps(a, b)
            }
        });
        // u[0..4] from rows 0-3, u[4..8] from rows 4-7: lanes (0,1,2,3) of each 128-bit half.
        let u: [__m256; 8] = std::array::from_fn(|i| {
            let base = (i / 4) * 4;
            let (a, b) = (t[base + (i % 4) / 2], t[base + 2 + (i % 4) / 2]);
            if i % 2 == 0 {
                _mm256_shuffle_ps::<0x44>(a, b)
            } else {
                _mm256_shuffle_ps::<0xEE>(a, b)
            }
        });
        for k in 0..8 {
            let (a, b) = (u[k % 4], u[4 + k % 4]);
            let column = if k < 4 {
                _mm256_permute2f128_ps::<0x20>(a, b)
            } else {
                _mm256_permute2f128_ps::<0x31>(a, b)
            };
            _mm256_storeu_ps(dst.add(k * ds), column);
        }
    }
}

/// `f` compiled for AVX2 and FMA where the CPU has them (checked at run time; the build
/// targets baseline x86-64), as is, elsewhere. `f` must be inlined into this function for the
/// wider instructions to reach it.
#[inline(always)]
pub(crate) fn with_simd(f: impl FnOnce()) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        #[target_feature(enable = "avx2,fma")]
        fn wide(f: impl FnOnce()) {
            f()
        }
        // SAFETY: the CPU supports the features just checked.
        unsafe { wide(f) };
        return;
    }
    f()
}

/// Channels transformed together, one per SIMD lane (8 f32 in AVX2).
const LANES: usize = 8;
type Lanes = [f32; LANES];

/// The 2-D transform X d Xᵀ from the 1-D one `t`: `t(x, y)` sets y = X x.
#[inline(always)]
fn transform_2d<const R: usize>(
    d: &[[Lanes; 6]; 6],
    out: &mut [[Lanes; R]; R],
    t: impl Fn(&[Lanes; 6], &mut [Lanes; R]),
) {
    let mut columns = [[[0f32; LANES]; R]; 6];
    let mut x = [[0f32; LANES]; 6];
    for (s, column) in columns.iter_mut().enumerate() {
        for (x, row) in x.iter_mut().zip(d) {
            *x = row[s];
        }
        t(&x, column);
    }
    for (r, out) in out.iter_mut().enumerate() {
        for (x, column) in x.iter_mut().zip(&columns) {
            *x = column[r];
        }
        t(&x, out);
    }
}

/// The first LANES values of `values`.
#[inline(always)]
fn lanes(values: &[f32]) -> Lanes {
    values[..LANES].try_into().expect("a whole lane group")
}

/// y = Bᵀ d.
#[inline(always)]
fn winograd_input(d: &[Lanes; 6], y: &mut [Lanes; 6]) {
    for l in 0..LANES {
        let [d0, d1, d2, d3, d4, d5] = [d[0][l], d[1][l], d[2][l], d[3][l], d[4][l], d[5][l]];
        y[0][l] = 4.0 * d0 - 5.0 * d2 + d4;
        y[1][l] = -4.0 * (d1 + d2) + d3 + d4;
        y[2][l] = 4.0 * (d1 - d2) - d3 + d4;
        y[3][l] = 2.0 * (d3 - d1) - d2 + d4;
        y[4][l] = 2.0 * (d1 - d3) - d2 + d4;
        y[5][l] = 4.0 * d1 - 5.0 * d3 + d5;
    }
}

/// y = Aᵀ m.
#[inline(always)]
fn winograd_output(m: &[Lanes; 6], y: &mut [Lanes; 4]) {
    for l in 0..LANES {
        let (sum12, diff12) = (m[1][l] + m[2][l], m[1][l] - m[2][l]);
        let (sum34, diff34) = (m[3][l] + m[4][l], m[3][l] - m[4][l]);
        y[0][l] = m[0][l] + sum12 + sum34;
        y[1][l] = diff12 + 2.0 * diff34;
        y[2][l] = sum12 + 4.0 * sum34;
        y[3][l] = diff12 + 8.0 * diff34 + m[5][l];
    }
}

/// `dst` (m × n) = `lhs` (m × k) · `rhs` (k × n) on one thread, each matrix given by a pointer
/// and its [column, row] strides.
///
/// # Safety
/// The pointers and strides must address matrices of those shapes.
pub(crate) unsafe fn matmul(
    [m, n, k]: [usize; 3],
    (dst, [dst_cs, dst_rs]): (*mut f32, [usize; 2]),
    (lhs, [lhs_cs, lhs_rs]): (*const f32, [usize; 2]),
    (rhs, [rhs_cs, rhs_rs]): (*const f32, [usize; 2]),
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_cs as isize,
            dst_rs as isize,
            false,
            lhs,
            lhs_cs as isize,
            lhs_rs as isize,
            rhs,
            rhs_cs as isize,
            rhs_rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// A raw pointer the parallel tiles share; each writes a disjoint part of what it points to.
pub(crate) struct SendPtr(pub(crate) *mut f32);
// SAFETY: see the uses in `conv2d_cpu` and `fused::attention`: the writes through it never
// overlap.
unsafe impl Sync for SendPtr {}

/// `torch.nn.Conv3d` with a kernel over time only (`[k, 1, 1]`, padding `[k/2, 0, 0]`), as in
/// SV3D's temporal ResBlocks: `weight` [out, in, k, 1, 1].
pub struct TemporalConv {
    weight: Tensor<5>,
    bias: Tensor<1>,
    c_out: usize,
    kernel: usize,
}

impl TemporalConv {
    pub fn load(p: &Params, c_in: usize, c_out: usize, kernel: usize) -> Self {
        Self {
            weight: p.tensor("weight", [c_out, c_in, kernel, 1, 1]),
            bias: p.tensor("bias", [c_out]),
            c_out,
            kernel,
        }
    }

    /// [`TemporalConv::forward`]'s output, planned (the time axis keeps its length).
    pub fn plan(&self, plan: &mut TensorPlan, [b, _, t, h, w]: [usize; 5]) -> [usize; 5] {
        plan.tensor("conv3d", &[b, self.c_out, t, h, w])
    }

    /// `x`: [batch, channels, time, height, width].
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let options = ConvOptions::new([1; 3], [self.kernel / 2, 0, 0], [1; 3], 1);
        conv3d(x, self.weight.clone(), Some(self.bias.clone()), options)
    }
}

/// `torch.nn.GroupNorm` over dimension 1 of a tensor of any rank.
pub struct GroupNorm {
    gamma: Tensor<1>,
    beta: Tensor<1>,
    groups: usize,
    eps: f64,
}

impl GroupNorm {
    pub fn load(p: &Params, groups: usize, channels: usize, eps: f64) -> Self {
        Self {
            gamma: p.tensor("weight", [channels]),
            beta: p.tensor("bias", [channels]),
            groups,
            eps,
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        self.forward_activated(x, false)
    }

    /// `silu(self.forward(x))`, fused on the CPU.
    pub fn forward_silu<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        self.forward_activated(x, true)
    }

    fn forward_activated<const D: usize>(&self, x: Tensor<D>, silu: bool) -> Tensor<D> {
        if on_host(&x) {
            let dims = x.dims();
            let [gamma, beta] =
                [&self.gamma, &self.beta].map(|t| host_values(t.clone().into_data()));
            let shape = [dims[0], dims[1], self.groups];
            let eps = self.eps as f32;
            return through_host(x, dims, |values| {
                fused::group_norm(values, shape, &gamma, &beta, eps, silu)
            });
        }
        let y = self.forward_ops(x);
        if silu { activation::silu(y) } else { y }
    }

    /// The norm by burn's ops, on any device. Statistics in f32 whatever `x`'s float type (f16
    /// sums of squares overflow and lose the mean); the result in `x`'s type.
    fn forward_ops<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let dtype: FloatDType = x.dtype().into();
        let x = x.cast(FloatDType::F32);
        let dims = x.dims();
        let (batch, channels) = (dims[0], dims[1]);
        let grouped = x.reshape([
            batch,
            self.groups,
            dims.iter().skip(1).product::<usize>() / self.groups,
        ]);
        let mean = grouped.clone().mean_dim(2);
        let centred = grouped - mean;
        let var = centred.clone().square().mean_dim(2);
        let normed = (centred / (var + self.eps).sqrt()).reshape(dims);
        let mut affine = [1; D];
        affine[1] = channels;
        let [gamma, beta] =
            [&self.gamma, &self.beta].map(|t| t.clone().cast(FloatDType::F32).reshape(affine));
        (normed * gamma + beta).cast(dtype)
    }

    /// [`GroupNorm::forward`]'s tensors, planned: the input widened to f32, its copies of that
    /// size, the result.
    pub fn plan<const D: usize>(&self, plan: &mut TensorPlan, x: [usize; D]) -> [usize; D] {
        plan.tensor_f32("group norm in f32", &x);
        plan.tensor("group norm", &x)
    }
}

/// `torch.nn.LayerNorm` over the last dimension.
pub struct LayerNorm {
    gamma: Tensor<1>,
    beta: Tensor<1>,
    eps: f64,
}

impl LayerNorm {
    pub fn load(p: &Params, dim: usize, eps: f64) -> Self {
        Self {
            gamma: p.tensor("weight", [dim]),
            beta: p.tensor("bias", [dim]),
            eps,
        }
    }

    /// In f32 whatever `x`'s float type, as [`GroupNorm`]; the result in `x`'s type.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        if on_host(&x) {
            let dims = x.dims();
            let [gamma, beta] =
                [&self.gamma, &self.beta].map(|t| host_values(t.clone().into_data()));
            let eps = self.eps as f32;
            return through_host(x, dims, |values| {
                fused::layer_norm(values, dims[D - 1], &gamma, &beta, eps)
            });
        }
        let dtype: FloatDType = x.dtype().into();
        let [gamma, beta] = [&self.gamma, &self.beta].map(|t| t.clone().cast(FloatDType::F32));
        layer_norm(x.cast(FloatDType::F32), gamma, Some(beta), self.eps).cast(dtype)
    }

    /// [`LayerNorm::forward`]'s tensors, planned, as [`GroupNorm::plan`].
    pub fn plan<const D: usize>(&self, plan: &mut TensorPlan, x: [usize; D]) -> [usize; D] {
        plan.tensor_f32("layer norm in f32", &x);
        plan.tensor("layer norm", &x)
    }
}

/// GEGLU: `projected`'s last dimension is a value half and a gate half; the result is
/// value · gelu(gate), with the exact (erf) gelu that is torch's default.
pub fn geglu<const D: usize>(projected: Tensor<D>) -> Tensor<D> {
    if on_host(&projected) {
        let mut dims = projected.dims();
        dims[D - 1] /= 2;
        return through_host(projected, dims, |values| fused::geglu(values, dims[D - 1]));
    }
    let [value, gate] = <[Tensor<D>; 2]>::try_from(projected.chunk(2, D - 1)).expect("two halves");
    value * activation::gelu(gate)
}

/// The largest storage binding, so the largest single tensor, the wgpu path can have: wgpu-hal
/// 30.0.2 caps Vulkan's `max_storage_buffer_binding_size` at `MAX_I32_BINDING_SIZE` = 2³¹ − 1
/// (src/vulkan/adapter.rs:1723, src/auxil/mod.rs:59), and cubecl-wgpu 0.11.3 makes that its
/// largest memory page (src/runtime.rs:647), failing with `BufferTooBig` past it. (Only its
/// SPIR-V backend with 64-bit indexing lifts it, src/backend/vulkan.rs:129; orbitmesh builds WGSL.)
pub const MAX_BINDING_BYTES: usize = (1 << 31) - 1;

/// The most bytes one attention score tensor may take where burn has no flash path (wgpu, and
/// any autodiff device): a quarter of [`MAX_BINDING_BYTES`], which leaves room for the softmax's copy beside it and
/// keeps many chunks in flight without the memory of one full-size score tensor (5.6 GB).
pub const ATTENTION_SCORE_BUDGET: usize = 1 << 29;

/// Softmax attention over `[batch, tokens, heads·dim]` projections, heads split and merged here.
///
/// On flex (no autodiff) in f32, over many keys, the fused CPU kernel runs (`fused::attention`:
/// burn's flash attention spent as long in its scalar softmax rows as in its matrix products);
/// over few keys, burn's own op. Elsewhere burn would materialise every score (its fallback), so
/// the work is split explicitly into [`attention_chunks`]: each chunk's scores fit
/// [`ATTENTION_SCORE_BUDGET`], and softmax rows are never split, so the result is the same as
/// one call's.
pub fn multi_head_attention(q: Tensor<3>, k: Tensor<3>, v: Tensor<3>, heads: usize) -> Tensor<3> {
    if on_host(&q) && k.dims()[1] >= fused::QUERY_BLOCK {
        let (dims, device) = (q.dims(), q.device());
        let keys = k.dims()[1];
        let [q, k, v] = [q, k, v].map(|t| host_values(t.into_data()));
        let shape = [dims[0], dims[1], keys, dims[2]];
        let out = fused::attention([&q, &k, &v], shape, heads);
        return Tensor::from_data(TensorData::new(out, dims), &device);
    }
    let split = |t: Tensor<3>| {
        let [b, n, c] = t.dims();
        t.reshape([b, n, heads, c / heads]).swap_dims(1, 2)
    };
    let [b, n, c] = q.dims();
    let (q, k, v) = (split(q), split(k), split(v));
    let out = if !q.is_autodiff() && q.device() == Device::flex() {
        attention(q, k, v)
    } else {
        attention_in_chunks(q, k, v, ATTENTION_SCORE_BUDGET)
    };
    out.swap_dims(1, 2).reshape([b, n, c])
}

fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    burn::tensor::module::attention(q, k, v, None, None, Default::default())
}

/// Attention over `[batch, heads, tokens, dim]` in the chunks [`attention_chunks`] gives.
fn attention_in_chunks(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, budget: usize) -> Tensor<4> {
    let [b, heads, n, _] = q.dims();
    let keys = k.dims()[2];
    let [batch_chunk, query_chunk] = attention_chunks(b, heads, n, keys, q.dtype().size(), budget);
    if [batch_chunk, query_chunk] == [b, n] {
        return attention(q, k, v);
    }
    let mut items = Vec::new();
    for b0 in (0..b).step_by(batch_chunk) {
        let bs = b0..(b0 + batch_chunk).min(b);
        let (kb, vb) = (k.clone().slice(bs.clone()), v.clone().slice(bs.clone()));
        let mut parts = Vec::new();
        for q0 in (0..n).step_by(query_chunk) {
            let qs = q0..(q0 + query_chunk).min(n);
            let qc = q.clone().slice([bs.clone(), 0..heads, qs]);
            parts.push(attention(qc, kb.clone(), vb.clone()));
        }
        items.push(Tensor::cat(parts, 2));
    }
    Tensor::cat(items, 0)
}

/// How [`multi_head_attention`] splits `batch` × `queries` so that one chunk's scores
/// (`batch_chunk · heads · query_chunk · keys` elements of `element_bytes`) fit `budget`:
/// the whole call if it fits, else whole batches of all queries, else queries of one batch
/// item. Never less than one query row of one item.
pub fn attention_chunks(
    batch: usize,
    heads: usize,
    queries: usize,
    keys: usize,
    element_bytes: usize,
    budget: usize,
) -> [usize; 2] {
    let row = heads * keys * element_bytes;
    let item = row * queries;
    if item * batch <= budget {
        [batch, queries]
    } else if item <= budget {
        [budget / item, queries]
    } else {
        [1, (budget / row).max(1)]
    }
}

/// [`multi_head_attention`]'s tensors, planned: the heads split apart (a copy of each input),
/// one chunk's scores and their softmax, the output. `q` [batch, queries, c], `k` [batch, keys, c].
pub fn plan_attention(
    plan: &mut TensorPlan,
    q: [usize; 3],
    k: [usize; 3],
    heads: usize,
) -> [usize; 3] {
    let [b, n, c] = q;
    let keys = k[1];
    plan.tensor("attention query heads", &[b, heads, n, c / heads]);
    plan.tensor("attention key heads", &[b, heads, keys, c / heads]);
    let [bc, qc] = attention_chunks(b, heads, n, keys, plan.element_bytes, plan.attention_budget);
    plan.tensor("attention scores", &[bc, heads, qc, keys]);
    plan.tensor("attention output", &q)
}

/// The tensors one pass of a model allocates, worked out from shapes alone by the modules'
/// `plan` methods (each beside its `forward`, following it op by op): the largest one is
/// what must fit the GPU path's largest binding ([`MAX_BINDING_BYTES`]), which a full-size
/// model can then be checked against without running it.
#[derive(Clone, Debug)]
pub struct TensorPlan {
    /// Bytes per element of the working precision (2 for f16, 4 for f32).
    pub element_bytes: usize,
    /// The score budget [`multi_head_attention`] splits by (its chunks are planned with it;
    /// `usize::MAX` plans attention unsplit).
    pub attention_budget: usize,
    largest: usize,
    largest_is: String,
}

impl TensorPlan {
    /// A plan of tensors of `element_bytes` each, attention chunked as on the GPU path.
    pub fn new(element_bytes: usize) -> Self {
        Self {
            element_bytes,
            attention_budget: ATTENTION_SCORE_BUDGET,
            largest: 0,
            largest_is: String::new(),
        }
    }

    /// A tensor of `dims` in the working precision; returns its dims.
    pub fn tensor<const D: usize>(&mut self, what: &str, dims: &[usize; D]) -> [usize; D] {
        self.record(what, dims, self.element_bytes);
        *dims
    }

    /// A tensor of `dims` in f32 whatever the working precision.
    pub fn tensor_f32<const D: usize>(&mut self, what: &str, dims: &[usize; D]) -> [usize; D] {
        self.record(what, dims, 4);
        *dims
    }

    fn record(&mut self, what: &str, dims: &[usize], element_bytes: usize) {
        let bytes = dims.iter().product::<usize>() * element_bytes;
        if bytes > self.largest {
            self.largest = bytes;
            self.largest_is = format!("{what} {dims:?}");
        }
    }

    /// The largest tensor planned: its bytes, and what and how big it is.
    pub fn largest(&self) -> (usize, &str) {
        (self.largest, &self.largest_is)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;

    /// Chunked attention equals one call, whether the chunks split queries or batch items, on
    /// flex and through autodiff (where the chunked path runs).
    #[test]
    fn attention_in_chunks_equals_one_call() {
        let device = Device::flex();
        let random =
            |dims: [usize; 4]| Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), &device);
        let (q, k, v) = (
            random([3, 2, 37, 8]),
            random([3, 2, 29, 8]),
            random([3, 2, 29, 8]),
        );
        let whole = attention(q.clone(), k.clone(), v.clone());
        let row = 2 * 29 * 4;
        for (budget, chunks) in [
            (usize::MAX, [3, 37]),
            (row * 37 * 2, [2, 37]),
            (row * 5, [1, 5]),
            (1, [1, 1]),
        ] {
            assert_eq!(attention_chunks(3, 2, 37, 29, 4, budget), chunks);
            let chunked = attention_in_chunks(q.clone(), k.clone(), v.clone(), budget);
            let diff = (chunked - whole.clone()).abs().max().into_scalar::<f32>();
            assert!(diff < 1e-6, "budget {budget}: {diff}");
        }
        let tracked = device.clone().autodiff();
        let lift = |t: &Tensor<4>, n: usize| {
            Tensor::<3>::from_data(
                t.clone().swap_dims(1, 2).reshape([3, n, 16]).into_data(),
                &tracked,
            )
        };
        let tracked = multi_head_attention(lift(&q, 37), lift(&k, 29), lift(&v, 29), 2);
        let expected = whole.swap_dims(1, 2).reshape([3, 37, 16]);
        let got = Tensor::<3>::from_data(tracked.into_data(), &device);
        assert!((got - expected).abs().max().into_scalar::<f32>() < 1e-6);
    }

    /// At SV3D's full size the top level's spatial attention (both guidance branches, 21 frames,
    /// 5 heads, 72² tokens) would hold 5.6 GB of f16 scores in one call; its chunks stay within
    /// the budget, and so below the largest binding.
    #[test]
    fn full_size_spatial_attention_is_split_within_the_budget() {
        for bytes in [2, 4] {
            let [bc, qc] = attention_chunks(42, 5, 5184, 5184, bytes, ATTENTION_SCORE_BUDGET);
            let chunk = bc * 5 * qc * 5184 * bytes;
            assert!(chunk <= ATTENTION_SCORE_BUDGET && ATTENTION_SCORE_BUDGET < MAX_BINDING_BYTES);
            assert!(42 * 5 * 5184 * 5184 * bytes > MAX_BINDING_BYTES);
            assert_eq!(bc, 1);
        }
    }

    /// A tensor on flex, and the same values on flex under autodiff, where the layers run
    /// burn's ops rather than the fused CPU kernels. The values are fixed, spread over
    /// [−2.5, 3.5) by the golden ratio from `start`: random ones now and then put two nearly
    /// equal values in a group of two, whose variance then makes the norm ill-conditioned and
    /// the comparison fail by chance.
    fn host_and_tracked<const D: usize>(dims: [usize; D], start: usize) -> (Tensor<D>, Tensor<D>) {
        let len = dims.iter().product::<usize>();
        let values: Vec<f32> = (start..start + len)
            .map(|i| ((i as f64 * 0.618_033_988_75).fract() * 6.0 - 2.5) as f32)
            .collect();
        let data = TensorData::new(values, dims);
        let host = Tensor::from_data(data.clone(), &Device::flex());
        let tracked = Tensor::from_data(data, &Device::flex().autodiff());
        (host, tracked)
    }

    /// The largest gap between the fused kernel's result and burn's ops', against the larger of
    /// 1 and the largest value.
    fn fused_gap<const D: usize>(host: Tensor<D>, tracked: Tensor<D>) -> f32 {
        assert_eq!(host.dims(), tracked.dims());
        let ops = Tensor::<D>::from_data(tracked.into_data(), &Device::flex());
        let scale = ops.clone().abs().max().into_scalar::<f32>().max(1.0);
        (host - ops).abs().max().into_scalar::<f32>() / scale
    }

    fn random_norm(channels: usize, groups: usize) -> GroupNorm {
        let [gamma, beta] = [0; 2]
            .map(|_| Tensor::random([channels], Distribution::Normal(0.0, 2.0), &Device::flex()));
        GroupNorm {
            gamma,
            beta,
            groups,
            eps: 1e-5,
        }
    }

    /// The fused group norm, with and without SiLU, against burn's ops: ranks 4 and 5 (the
    /// temporal blocks'), groups of one channel and of several, planes shorter and longer than
    /// the sums' lanes.
    #[test]
    fn fused_group_norm_matches_burns_ops() {
        let (norm, (x, y)) = (random_norm(8, 4), host_and_tracked([2, 8, 5, 3], 0));
        assert!(fused_gap(norm.forward(x.clone()), norm.forward(y.clone())) < 2e-6);
        assert!(fused_gap(norm.forward_silu(x), norm.forward_silu(y)) < 2e-6);
        let (norm, (x, y)) = (random_norm(6, 6), host_and_tracked([1, 6, 3, 17, 11], 0));
        assert!(fused_gap(norm.forward(x.clone()), norm.forward(y.clone())) < 2e-6);
        assert!(fused_gap(norm.forward_silu(x), norm.forward_silu(y)) < 2e-6);
        let (norm, (x, y)) = (random_norm(4, 2), host_and_tracked([3, 4, 1, 1], 0));
        assert!(fused_gap(norm.forward_silu(x), norm.forward_silu(y)) < 2e-6);
    }

    /// The fused layer norm and GEGLU against burn's ops, over fewer rows than one parallel
    /// task takes and over several tasks with a partial last one.
    #[test]
    fn fused_layer_norm_and_geglu_match_burns_ops() {
        for (rows, dim) in [(3, 5), (130, 40), (70, 320)] {
            let [gamma, beta] = [0; 2]
                .map(|_| Tensor::random([dim], Distribution::Normal(0.0, 2.0), &Device::flex()));
            let norm = LayerNorm {
                gamma,
                beta,
                eps: 1e-5,
            };
            let (x, y) = host_and_tracked([2, rows, dim], 0);
            let gap = fused_gap(norm.forward(x), norm.forward(y));
            assert!(gap < 2e-6, "layer norm {rows}×{dim}: {gap}");
            let (x, y) = host_and_tracked([2, rows, 2 * dim], 0);
            let gap = fused_gap(geglu(x), geglu(y));
            assert!(gap < 1e-6, "GEGLU {rows}×{dim}: {gap}");
        }
    }

    /// The fused attention against burn's ops: several items and heads, a partial last query
    /// block, more keys than queries, sharp softmax rows (large logits).
    #[test]
    fn fused_attention_matches_burns_ops() {
        let (q, q_tracked) = host_and_tracked([2, 150, 48], 0);
        let (k, k_tracked) = host_and_tracked([2, 290, 48], 20_000);
        let (v, v_tracked) = host_and_tracked([2, 290, 48], 50_000);
        let host = multi_head_attention(q, k, v, 3);
        let gap = fused_gap(
            host,
            multi_head_attention(q_tracked, k_tracked, v_tracked, 3),
        );
        assert!(gap < 1e-5, "{gap}");
    }

    /// Both CPU convolutions against burn's generic one, on odd sizes, dilations, 1×1 and 3×3
    /// kernels, with and without padding and ReLU, the input given as one channel group and as
    /// two: im2col on all, Winograd on the 3×3 ones without dilation (sizes that leave partial
    /// tiles, channel counts that are not whole lane groups, enough channels for several tile
    /// batches).
    #[test]
    fn cpu_convolution_matches_burn() {
        let device = Device::flex();
        for (c_in, c_out, kernel, padding, dilation, h, w, relu) in [
            (3, 5, 3, 1, 1, 13, 10, false),
            (70, 33, 3, 1, 1, 23, 41, true),
            (3, 4, 3, 0, 1, 6, 5, false),
            (2, 3, 3, 2, 1, 1, 2, true),
            (4, 6, 3, 2, 2, 9, 17, false),
            (2, 3, 3, 8, 8, 5, 6, true),
            (7, 2, 1, 0, 1, 4, 3, false),
        ] {
            let random = |dims: [usize; 4]| {
                Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), &device)
            };
            let x = random([1, c_in, h, w]);
            let weight = random([c_out, c_in, kernel, kernel]);
            let bias = Tensor::<1>::random([c_out], Distribution::Normal(0.0, 1.0), &device);
            let options = ConvOptions::new([1, 1], [padding; 2], [dilation; 2], 1);
            let mut expected = conv2d(x.clone(), weight.clone(), Some(bias.clone()), options);
            if relu {
                expected = activation::relu(expected);
            }
            let host = |t: Tensor<4>| -> Vec<f32> { t.into_data().try_to_vec().unwrap() };
            let (x, weight) = (host(x), host(weight));
            let bias: Vec<f32> = bias.into_data().try_to_vec().unwrap();
            let conv = CpuConv {
                weight: &weight,
                bias: &bias,
                shape: CpuConvShape {
                    c_out,
                    kernel,
                    padding,
                    dilation,
                    relu,
                },
            };
            let split = c_in / 2 * h * w;
            let one = [(&x[..], c_in)];
            let two = [(&x[..split], c_in / 2), (&x[split..], c_in - c_in / 2)];
            let mut paths = vec![
                ("im2col", conv.im2col(&one, [h, w])),
                ("im2col, two groups", conv.im2col(&two, [h, w])),
            ];
            if kernel == 3 && dilation == 1 {
                paths.push(("winograd", conv.winograd(&one, [h, w])));
                paths.push(("winograd, two groups", conv.winograd(&two, [h, w])));
            }
            let expected_dims = expected.dims();
            let expected = host(expected);
            let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (path, (got, dims)) in paths {
                assert_eq!([1, c_out, dims[0], dims[1]], expected_dims, "{path}");
                let worst = got
                    .iter()
                    .zip(&expected)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(
                    worst < 1e-5 * scale.max(1.0),
                    "{path} {c_in}→{c_out} k{kernel} p{padding} d{dilation}: {worst} of {scale}"
                );
            }
        }
    }
}
