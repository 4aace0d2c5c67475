//! The radiance MLPs under autodiff: the hand-written backward, through the inner backend's
//! [`RadianceMlpOps::radiance_mlp_backward`] (the fused kernel on the CPU).

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend};

use super::RadianceMlpOps;

impl<B: RadianceMlpOps, C: CheckpointStrategy> RadianceMlpOps for Autodiff<B, C> {
    fn radiance_mlp(
        encoded: FloatTensor<Self>,
        sh: FloatTensor<Self>,
        density_in: FloatTensor<Self>,
        density_out: FloatTensor<Self>,
        colour_in: FloatTensor<Self>,
        colour_hidden: FloatTensor<Self>,
        colour_out: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct MlpBackward;
        impl<B: RadianceMlpOps> Backward<B, 6> for MlpBackward {
            /// The encoding, the SH, the five weights.
            type State = [FloatTensor<B>; 7];
            fn backward(
                self,
                ops: Ops<Self::State, 6>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let grad_out = grads.consume::<B>(&ops.node);
                let [encoded, sh, w0, w1, w2, w3, w4] = ops.state;
                let (d_encoded, d0, d1, d2, d3, d4) =
                    B::radiance_mlp_backward(encoded, sh, w0, w1, w2, w3, w4, grad_out);
                for (node, grad) in ops.parents.into_iter().zip([d_encoded, d0, d1, d2, d3, d4]) {
                    if let Some(node) = node {
                        grads.register::<B>(node.id, grad);
                    }
                }
            }
        }
        let parents = [
            &encoded,
            &density_in,
            &density_out,
            &colour_in,
            &colour_hidden,
            &colour_out,
        ];
        let sh = sh.into_primitive();
        match MlpBackward
            .prepare::<C>(parents.map(|t| t.node()))
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let [e, w0, w1, w2, w3, w4] = parents.map(|t| t.primitive().clone());
                let out = B::radiance_mlp(
                    e.clone(),
                    sh.clone(),
                    w0.clone(),
                    w1.clone(),
                    w2.clone(),
                    w3.clone(),
                    w4.clone(),
                );
                prep.finish([e, sh, w0, w1, w2, w3, w4], out)
            }
            OpsKind::UnTracked(prep) => {
                let [e, w0, w1, w2, w3, w4] = parents.map(|t| t.primitive().clone());
                prep.finish(B::radiance_mlp(e, sh, w0, w1, w2, w3, w4))
            }
        }
    }

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
        let (d_encoded, d0, d1, d2, d3, d4) = B::radiance_mlp_backward(
            encoded.into_primitive(),
            sh.into_primitive(),
            density_in.into_primitive(),
            density_out.into_primitive(),
            colour_in.into_primitive(),
            colour_hidden.into_primitive(),
            colour_out.into_primitive(),
            grad_out.into_primitive(),
        );
        let lift = <Self as AutodiffBackend>::from_inner;
        (
            lift(d_encoded),
            lift(d0),
            lift(d1),
            lift(d2),
            lift(d3),
            lift(d4),
        )
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::activation::{relu, sigmoid};
    use burn::tensor::{Device, Tensor};

    use crate::ops::mlp::tests::{inputs, run, worst};
    use crate::ops::mlp::{MAX_LOG_DENSITY, radiance_mlp};

    /// The two MLPs in burn's tensor ops, differentiated by burn.
    fn reference(encoded: Tensor<2>, sh: Tensor<2>, w: [Tensor<2>; 5]) -> Tensor<2> {
        let [w0, w1, w2, w3, w4] = w;
        let g = w1.dims()[1];
        let geometry = relu(encoded.matmul(w0)).matmul(w1);
        let x = Tensor::cat(vec![sh, geometry.clone().narrow(1, 1, g - 1)], 1);
        let rgb = sigmoid(relu(relu(x.matmul(w2)).matmul(w3)).matmul(w4));
        let sigma = geometry.narrow(1, 0, 1).clamp_max(MAX_LOG_DENSITY).exp();
        Tensor::cat(vec![sigma, rgb], 1)
    }

    #[test]
    fn cpu_kernel_matches_burn_ops_forward_and_gradients() {
        let inputs = inputs(1);
        let device = Device::flex().autodiff();
        let kernel = run(&inputs, &device, radiance_mlp);
        let plain = run(&inputs, &device, reference);
        let differences = worst(&kernel, &plain);
        eprintln!("fused MLP against burn ops (output, encoding, 5 weights): {differences:?}");
        assert!(differences.iter().all(|d| *d <= 1e-5), "{differences:?}");
        // The gradients are not trivially zero.
        assert!(kernel.iter().all(|v| v.iter().any(|x| x.abs() > 1e-3)));
    }
}
