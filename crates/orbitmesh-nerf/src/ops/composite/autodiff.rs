//! Compositing under autodiff: the hand-written backward, through the inner backend's
//! [`CompositeOps::composite_backward`], split into the gradients of σ and of the colours.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend};

use super::{CompositeOps, RayPacking};

impl<B: CompositeOps, C: CheckpointStrategy> CompositeOps for Autodiff<B, C> {
    fn composite(
        sigma: FloatTensor<Self>,
        rgb: FloatTensor<Self>,
        packing: Arc<RayPacking>,
    ) -> FloatTensor<Self> {
        type State<B> = (
            FloatTensor<B>,
            FloatTensor<B>,
            FloatTensor<B>,
            Arc<RayPacking>,
        );
        #[derive(Debug)]
        struct CompositeBackward;
        impl<B: CompositeOps> Backward<B, 2> for CompositeBackward {
            type State = State<B>;
            fn backward(
                self,
                ops: Ops<Self::State, 2>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let [sigma_node, rgb_node] = ops.parents;
                let grad_out = grads.consume::<B>(&ops.node);
                let (sigma, rgb, out, packing) = ops.state;
                let n = packing.samples();
                let both = B::composite_backward(sigma, rgb, out, grad_out, packing);
                if let Some(node) = sigma_node {
                    let g = B::float_slice(both.clone(), &[(0..n).into(), (0..1).into()]);
                    grads.register::<B>(node.id, B::float_reshape(g, [n].into()));
                }
                if let Some(node) = rgb_node {
                    let g = B::float_slice(both, &[(0..n).into(), (1..4).into()]);
                    grads.register::<B>(node.id, g);
                }
            }
        }
        match CompositeBackward
            .prepare::<C>([sigma.node(), rgb.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (s, c) = (sigma.primitive().clone(), rgb.primitive().clone());
                let out = B::composite(s.clone(), c.clone(), packing.clone());
                prep.finish((s, c, out.clone(), packing), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::composite(
                sigma.into_primitive(),
                rgb.into_primitive(),
                packing,
            )),
        }
    }

    fn composite_backward(
        sigma: FloatTensor<Self>,
        rgb: FloatTensor<Self>,
        out: FloatTensor<Self>,
        grad_out: FloatTensor<Self>,
        packing: Arc<RayPacking>,
    ) -> FloatTensor<Self> {
        <Self as AutodiffBackend>::from_inner(B::composite_backward(
            sigma.into_primitive(),
            rgb.into_primitive(),
            out.into_primitive(),
            grad_out.into_primitive(),
            packing,
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use burn::tensor::{Device, Tensor, TensorData};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use crate::ops::composite::{RayPacking, composite};

    fn uniform_packing(rays: usize, per_ray: usize, rng: &mut ChaCha8Rng) -> RayPacking {
        RayPacking {
            offsets: (0..=rays).map(|r| (r * per_ray) as u32).collect(),
            deltas: (0..rays * per_ray)
                .map(|_| 0.01 + 0.05 * rng.random::<f32>())
                .collect(),
        }
    }

    /// Compositing in plain burn ops for rays of equal length: exclusive cumulative optical depth.
    fn reference(
        sigma: Tensor<1>,
        rgb: Tensor<2>,
        packing: &RayPacking,
        per_ray: usize,
    ) -> Tensor<2> {
        let rays = packing.rays();
        let device = sigma.device();
        let delta = Tensor::<2>::from_data(
            TensorData::new(packing.deltas.clone(), [rays, per_ray]),
            &device,
        );
        let tau = sigma.reshape([rays, per_ray]) * delta;
        let alpha = tau.clone().neg().exp().neg() + 1.0;
        let before = tau.clone().cumsum(1) - tau;
        let w = before.neg().exp() * alpha;
        let colour = (rgb.reshape([rays, per_ray, 3]) * w.clone().unsqueeze_dim(2)).sum_dim(1);
        let opacity = w.sum_dim(1).unsqueeze_dim(2);
        Tensor::cat(vec![colour, opacity], 2).reshape([rays, 4])
    }

    #[test]
    fn kernel_matches_plain_burn_ops_forward_and_gradients() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (rays, per_ray) = (64, 24);
        let packing = Arc::new(uniform_packing(rays, per_ray, &mut rng));
        let n = rays * per_ray;
        let sigma: Vec<f32> = (0..n).map(|_| 40.0 * rng.random::<f32>()).collect();
        let rgb: Vec<f32> = (0..3 * n).map(|_| rng.random::<f32>()).collect();
        let upstream: Vec<f32> = (0..4 * rays).map(|_| rng.random::<f32>() - 0.5).collect();
        let device = Device::flex().autodiff();
        let run = |custom: bool| {
            let s =
                Tensor::<1>::from_data(TensorData::new(sigma.clone(), [n]), &device).require_grad();
            let c = Tensor::<2>::from_data(TensorData::new(rgb.clone(), [n, 3]), &device)
                .require_grad();
            let out = if custom {
                composite(s.clone(), c.clone(), packing.clone())
            } else {
                reference(s.clone(), c.clone(), &packing, per_ray)
            };
            let up = Tensor::<2>::from_data(TensorData::new(upstream.clone(), [rays, 4]), &device);
            let grads = (out.clone() * up).sum().backward();
            let v = |t: Tensor<2>| t.into_data().try_into_vec::<f32>().unwrap();
            (
                v(out),
                s.grad(&grads)
                    .unwrap()
                    .into_data()
                    .try_into_vec::<f32>()
                    .unwrap(),
                v(c.grad(&grads).unwrap()),
            )
        };
        let (out, gs, gc) = run(true);
        let (out_r, gs_r, gc_r) = run(false);
        let close = |a: &[f32], b: &[f32], what: &str| {
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() <= 1e-5 + 1e-4 * y.abs(), "{what}: {x} vs {y}");
            }
        };
        close(&out, &out_r, "forward");
        close(&gs, &gs_r, "∂σ");
        close(&gc, &gc_r, "∂rgb");
    }
}
