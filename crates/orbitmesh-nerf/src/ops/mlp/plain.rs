//! The radiance MLPs and their backward in burn's own ops: the default bodies of
//! [`RadianceMlpOps`](super::RadianceMlpOps), which every backend without a kernel of its own runs
//! (on the GPU, fusion merges them).

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, TensorMetadata};

use super::MAX_LOG_DENSITY;

/// Every activation of the two MLPs, in burn ops.
pub(super) struct PlainActivations<B: Backend> {
    encoded: FloatTensor<B>,
    h1: FloatTensor<B>,
    geometry: FloatTensor<B>,
    x: FloatTensor<B>,
    a1: FloatTensor<B>,
    a2: FloatTensor<B>,
    pub(super) c: FloatTensor<B>,
}

fn columns<B: Backend>(t: FloatTensor<B>, range: std::ops::Range<usize>) -> FloatTensor<B> {
    let n = t.shape()[0];
    B::float_slice(t, &[(0..n).into(), range.into()])
}

fn transposed<B: Backend>(t: &FloatTensor<B>) -> FloatTensor<B> {
    B::float_transpose(t.clone())
}

impl<B: Backend> PlainActivations<B> {
    pub(super) fn new(
        encoded: FloatTensor<B>,
        sh: FloatTensor<B>,
        w: &[FloatTensor<B>; 5],
    ) -> Self {
        let h1 = B::relu(B::float_matmul(encoded.clone(), w[0].clone()));
        let geometry = B::float_matmul(h1.clone(), w[1].clone());
        let g = geometry.shape()[1];
        let x = B::float_cat(vec![sh, columns::<B>(geometry.clone(), 1..g)], 1);
        let a1 = B::relu(B::float_matmul(x.clone(), w[2].clone()));
        let a2 = B::relu(B::float_matmul(a1.clone(), w[3].clone()));
        let c = B::float_matmul(a2.clone(), w[4].clone());
        PlainActivations {
            encoded,
            h1,
            geometry,
            x,
            a1,
            a2,
            c,
        }
    }

    fn log_density(&self) -> FloatTensor<B> {
        columns::<B>(self.geometry.clone(), 0..1)
    }

    /// σ [n,1].
    pub(super) fn density(&self) -> FloatTensor<B> {
        B::float_exp(B::float_clamp_max(
            self.log_density(),
            MAX_LOG_DENSITY.into(),
        ))
    }
}

/// [`RadianceMlpOps::radiance_mlp_backward`](super::RadianceMlpOps::radiance_mlp_backward) in
/// burn ops: [d encoded, d weights in layer order].
pub(super) fn plain_backward<B: Backend>(
    encoded: FloatTensor<B>,
    sh: FloatTensor<B>,
    w: [FloatTensor<B>; 5],
    grad_out: FloatTensor<B>,
) -> [FloatTensor<B>; 6] {
    let a = PlainActivations::<B>::new(encoded, sh, &w);
    let s = a.x.shape()[1] + 1 - a.geometry.shape()[1];
    let x_width = a.x.shape()[1];
    let (log_density, density) = (a.log_density(), a.density());
    let rgb = B::sigmoid(a.c.clone());
    let d_c = B::sigmoid_backward(rgb, columns::<B>(grad_out.clone(), 1..4));
    let d4 = B::float_matmul(transposed::<B>(&a.a2), d_c.clone());
    let d_a2 = B::relu_backward(a.a2, B::float_matmul(d_c, transposed::<B>(&w[4])));
    let d3 = B::float_matmul(transposed::<B>(&a.a1), d_a2.clone());
    let d_a1 = B::relu_backward(a.a1, B::float_matmul(d_a2, transposed::<B>(&w[3])));
    let d2 = B::float_matmul(transposed::<B>(&a.x), d_a1.clone());
    let d_x = B::float_matmul(d_a1, transposed::<B>(&w[2]));
    // σ = exp(min(l, max)): the gradient passes where l < max (ReLU's mask of max − l).
    let headroom = B::float_add_scalar(B::float_neg(log_density), MAX_LOG_DENSITY.into());
    let d_log = B::relu_backward(
        headroom,
        B::float_mul(columns::<B>(grad_out, 0..1), density),
    );
    let d_geometry = B::float_cat(vec![d_log, columns::<B>(d_x, s..x_width)], 1);
    let d1 = B::float_matmul(transposed::<B>(&a.h1), d_geometry.clone());
    let d_h1 = B::relu_backward(a.h1, B::float_matmul(d_geometry, transposed::<B>(&w[1])));
    let d0 = B::float_matmul(transposed::<B>(&a.encoded), d_h1.clone());
    let d_encoded = B::float_matmul(d_h1, transposed::<B>(&w[0]));
    [d_encoded, d0, d1, d2, d3, d4]
}
