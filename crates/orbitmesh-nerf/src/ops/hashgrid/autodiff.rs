//! The hash-grid encoding under autodiff: the hand-written backward, which scatter-adds the
//! features' gradient into the table through the inner backend's
//! [`HashGridOps::hash_encode_backward`].

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend};

use super::{HashGridConfig, HashGridOps};

impl<B: HashGridOps, C: CheckpointStrategy> HashGridOps for Autodiff<B, C> {
    fn hash_encode(
        points: FloatTensor<Self>,
        table: FloatTensor<Self>,
        config: HashGridConfig,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct EncodeBackward;
        impl<B: HashGridOps> Backward<B, 1> for EncodeBackward {
            type State = (FloatTensor<B>, HashGridConfig);
            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let [table] = ops.parents;
                let grad_out = grads.consume::<B>(&ops.node);
                if let Some(node) = table {
                    let (points, config) = ops.state;
                    grads.register::<B>(node.id, B::hash_encode_backward(points, grad_out, config));
                }
            }
        }
        let points = points.into_primitive();
        match EncodeBackward
            .prepare::<C>([table.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let out = B::hash_encode(points.clone(), table.primitive().clone(), config);
                prep.finish((points, config), out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::hash_encode(points, table.into_primitive(), config))
            }
        }
    }

    fn hash_encode_backward(
        points: FloatTensor<Self>,
        grad_out: FloatTensor<Self>,
        config: HashGridConfig,
    ) -> FloatTensor<Self> {
        <Self as AutodiffBackend>::from_inner(B::hash_encode_backward(
            points.into_primitive(),
            grad_out.into_primitive(),
            config,
        ))
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Int, Tensor, TensorData};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use crate::ops::hashgrid::cpu::corners;
    use crate::ops::hashgrid::tests::{random_points, small, tensor};
    use crate::ops::hashgrid::{HashGridConfig, hash_encode};

    /// The same encoding in plain burn ops (select + weighted sum), differentiated by burn.
    fn reference(config: &HashGridConfig, points: &[f32], table: Tensor<2>) -> Tensor<2> {
        let layout = config.layout();
        let n = points.len() / 3;
        let f = config.features as usize;
        let device = table.device();
        let mut rows = Vec::new();
        let mut weights = Vec::new();
        for p in points.chunks_exact(3) {
            for level in &layout {
                let (r, w) = corners(level, [p[0], p[1], p[2]]);
                rows.extend(r.map(|v| v as i64));
                weights.extend(w);
            }
        }
        let l = layout.len();
        let idx = Tensor::<1, Int>::from_data(TensorData::new(rows, [n * l * 8]), &device);
        let gathered = table.select(0, idx).reshape([n, l, 8, f]);
        let w = Tensor::<4>::from_data(TensorData::new(weights, [n, l, 8, 1]), &device);
        (gathered * w).sum_dim(2).reshape([n, l * f])
    }

    #[test]
    fn kernel_matches_plain_burn_ops_forward_and_gradient() {
        let config = small();
        let device = Device::flex().autodiff();
        let points = random_points(300, 1);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let rows = config.table_rows();
        let table_values: Vec<f32> = (0..rows * 2).map(|_| rng.random::<f32>() - 0.5).collect();
        let upstream: Vec<f32> = (0..300 * config.output_dim())
            .map(|_| rng.random::<f32>() - 0.5)
            .collect();
        let run = |custom: bool| {
            let table = tensor(table_values.clone(), [rows, 2], &device).require_grad();
            let p = tensor(points.clone(), [300, 3], &device);
            let out = if custom {
                hash_encode(p, table.clone(), config)
            } else {
                reference(&config, &points, table.clone())
            };
            let up = tensor(upstream.clone(), [300, config.output_dim()], &device);
            let loss = (out.clone() * up).sum();
            let grads = loss.backward();
            let grad = table.grad(&grads).expect("table gradient");
            (
                out.into_data().try_into_vec::<f32>().unwrap(),
                grad.into_data().try_into_vec::<f32>().unwrap(),
            )
        };
        let (out, grad) = run(true);
        let (out_ref, grad_ref) = run(false);
        let close = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .all(|(x, y)| (x - y).abs() <= 1e-5 + 1e-4 * y.abs())
        };
        assert!(close(&out, &out_ref), "forward differs from the reference");
        assert!(
            close(&grad, &grad_ref),
            "gradient differs from the reference"
        );
        assert!(grad.iter().any(|g| *g != 0.0));
    }
}
