//! The PyTorch layers SV3D's and IS-Net's modules are made of, loaded by their checkpoint names and run with
//! burn's tensor ops. Weights keep PyTorch's layouts except where burn's op wants another.

use burn::tensor::module::{conv2d, conv3d, layer_norm, linear};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

use crate::weights::Params;

/// `torch.nn.Linear`: `weight` [out, in], `bias` [out].
pub struct Linear {
    /// [in, out], as burn's `linear` takes it.
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
}

impl Linear {
    pub fn load(p: &Params, d_in: usize, d_out: usize, bias: bool) -> Self {
        Self {
            weight: p.tensor("weight", [d_out, d_in]).transpose(),
            bias: bias.then(|| p.tensor("bias", [d_out])),
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        linear(x, self.weight.clone(), self.bias.clone())
    }
}

/// `torch.nn.Conv2d` with a square kernel: `weight` [out, in, k, k], `bias` [out].
pub struct Conv2d {
    weight: Tensor<4>,
    bias: Tensor<1>,
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
            stride,
            padding,
            dilation: 1,
        }
    }

    /// The same convolution with its taps `dilation` pixels apart (padding unchanged).
    pub fn dilated(self, dilation: usize) -> Self {
        Self { dilation, ..self }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if self.stride == 1 && !x.is_autodiff() && x.device() == Device::flex() {
            return self.forward_cpu(x);
        }
        let options = ConvOptions::new([self.stride; 2], [self.padding; 2], [self.dilation; 2], 1);
        conv2d(x, self.weight.clone(), Some(self.bias.clone()), options)
    }

    /// [`Conv2d::forward`] on the CPU by [`conv2d_cpu`].
    fn forward_cpu(&self, x: Tensor<4>) -> Tensor<4> {
        let device = x.device();
        let dims = x.dims();
        let [c_out, _, kernel, _] = self.weight.dims();
        let host = |t: TensorData| {
            t.convert::<f32>()
                .try_into_vec::<f32>()
                .expect("f32 tensor")
        };
        let (out, out_dims) = conv2d_cpu(
            &host(x.into_data()),
            dims,
            &host(self.weight.clone().into_data()),
            &host(self.bias.clone().into_data()),
            c_out,
            kernel,
            self.padding,
            self.dilation,
        );
        Tensor::from_data(TensorData::new(out, out_dims), &device)
    }
}

/// A stride-1 convolution (`x` [n, c_in, h, w], `weight` [c_out, c_in, k, k]) on the CPU.
///
/// flex's generic convolution gathers the whole im2col matrix (nine times the input for 3×3) with
/// per-element indexing, which took more time than the matrix products themselves in IS-Net. Here
/// the input is padded once; the output is computed "wide" (as many columns as the padded input,
/// the extra ones discarded), so each tap's input rows are contiguous runs of the padded planes,
/// and im2col becomes memcpy of small column tiles that stay in cache. Each tile is one GEMM
/// (gemm crate, the one flex uses), tiles in parallel with rayon.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_cpu(
    x: &[f32],
    [n, c_in, h, w]: [usize; 4],
    weight: &[f32],
    bias: &[f32],
    c_out: usize,
    kernel: usize,
    padding: usize,
    dilation: usize,
) -> (Vec<f32>, [usize; 4]) {
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
    let mut out = vec![0f32; n * c_out * ho * wo];
    let mut wide = vec![0f32; c_out * cols];
    for (b, out) in out.chunks_mut(c_out * ho * wo).enumerate() {
        // The last taps of the discarded columns reach `reach` values past the last plane.
        let mut padded = vec![0f32; c_in * plane + reach];
        padded[..c_in * plane]
            .par_chunks_mut(plane)
            .enumerate()
            .for_each(|(c, dst)| {
                let src = &x[(b * c_in + c) * h * w..][..h * w];
                for (y, row) in src.chunks(w).enumerate() {
                    dst[(y + padding) * wp + padding..][..w].copy_from_slice(row);
                }
            });
        let dst = SendPtr(wide.as_mut_ptr());
        (0..cols.div_ceil(tile)).into_par_iter().for_each(|t| {
            let (start, width) = (t * tile, tile.min(cols - t * tile));
            let mut block = vec![0f32; depth * width];
            for (r, row) in block.chunks_mut(width).enumerate() {
                let (c, tap) = (r / taps, r % taps);
                let offset = c * plane + (tap / kernel) * dilation * wp + (tap % kernel) * dilation;
                row.copy_from_slice(&padded[offset + start..][..width]);
            }
            let dst = &dst;
            // SAFETY: every tile writes only its own columns [start, start + width) of each of
            // the `c_out` rows of `wide`, which outlives the parallel loop; the operands are
            // in-bounds slices of the shapes given.
            unsafe {
                gemm::gemm(
                    c_out,
                    width,
                    depth,
                    dst.0.add(start),
                    1,
                    cols as isize,
                    false,
                    weight.as_ptr(),
                    1,
                    depth as isize,
                    block.as_ptr(),
                    1,
                    width as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        });
        out.par_chunks_mut(ho * wo)
            .enumerate()
            .for_each(|(c, dst)| {
                let src = &wide[c * cols..][..cols];
                for (y, row) in dst.chunks_mut(wo).enumerate() {
                    for (d, s) in row.iter_mut().zip(&src[y * wp..][..wo]) {
                        *d = s + bias[c];
                    }
                }
            });
    }
    (out, [n, c_out, ho, wo])
}

/// A raw pointer the parallel tiles share; each writes a disjoint part of what it points to.
struct SendPtr(*mut f32);
// SAFETY: see the use in `conv2d_cpu`: the writes through it never overlap.
unsafe impl Sync for SendPtr {}

/// `torch.nn.Conv3d` with a kernel over time only (`[k, 1, 1]`, padding `[k/2, 0, 0]`), as in
/// SV3D's temporal ResBlocks: `weight` [out, in, k, 1, 1].
pub struct TemporalConv {
    weight: Tensor<5>,
    bias: Tensor<1>,
    kernel: usize,
}

impl TemporalConv {
    pub fn load(p: &Params, c_in: usize, c_out: usize, kernel: usize) -> Self {
        Self {
            weight: p.tensor("weight", [c_out, c_in, kernel, 1, 1]),
            bias: p.tensor("bias", [c_out]),
            kernel,
        }
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
        normed * self.gamma.clone().reshape(affine) + self.beta.clone().reshape(affine)
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

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        layer_norm(x, self.gamma.clone(), Some(self.beta.clone()), self.eps)
    }
}

/// Softmax attention over `[batch, tokens, heads·dim]` projections, heads split and merged here.
pub fn multi_head_attention(q: Tensor<3>, k: Tensor<3>, v: Tensor<3>, heads: usize) -> Tensor<3> {
    let split = |t: Tensor<3>| {
        let [b, n, c] = t.dims();
        t.reshape([b, n, heads, c / heads]).swap_dims(1, 2)
    };
    let [b, n, c] = q.dims();
    let out = burn::tensor::module::attention(
        split(q),
        split(k),
        split(v),
        None,
        None,
        Default::default(),
    );
    out.swap_dims(1, 2).reshape([b, n, c])
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;

    /// The CPU convolution against burn's generic one, on odd sizes, a batch of two, dilations,
    /// 1×1 and 3×3 kernels, with and without padding.
    #[test]
    fn cpu_convolution_matches_burn() {
        let device = Device::flex();
        for (c_in, c_out, kernel, padding, dilation, h, w) in [
            (3, 5, 3, 1, 1, 13, 10),
            (4, 6, 3, 2, 2, 9, 17),
            (2, 3, 3, 8, 8, 5, 6),
            (7, 2, 1, 0, 1, 4, 3),
            (3, 4, 3, 0, 1, 6, 5),
        ] {
            let random = |dims: [usize; 4]| {
                Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), &device)
            };
            let x = random([2, c_in, h, w]);
            let weight = random([c_out, c_in, kernel, kernel]);
            let bias = Tensor::<1>::random([c_out], Distribution::Normal(0.0, 1.0), &device);
            let options = ConvOptions::new([1, 1], [padding; 2], [dilation; 2], 1);
            let expected = conv2d(x.clone(), weight.clone(), Some(bias.clone()), options);
            let host = |t: Tensor<4>| -> Vec<f32> { t.into_data().try_to_vec().unwrap() };
            let (got, dims) = conv2d_cpu(
                &host(x),
                [2, c_in, h, w],
                &host(weight),
                &bias.into_data().try_to_vec::<f32>().unwrap(),
                c_out,
                kernel,
                padding,
                dilation,
            );
            assert_eq!(dims, expected.dims());
            let worst = got
                .iter()
                .zip(host(expected))
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-4, "k{kernel} p{padding} d{dilation}: {worst}");
        }
    }
}
