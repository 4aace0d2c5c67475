//! The PyTorch layers SV3D's and IS-Net's modules are made of, loaded by their checkpoint names and run with
//! burn's tensor ops. Weights keep PyTorch's layouts except where burn's op wants another.

use burn::tensor::Tensor;
use burn::tensor::module::{conv2d, conv3d, layer_norm, linear};
use burn::tensor::ops::ConvOptions;

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
        let options = ConvOptions::new([self.stride; 2], [self.padding; 2], [self.dilation; 2], 1);
        conv2d(x, self.weight.clone(), Some(self.bias.clone()), options)
    }
}

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
