//! Volume-rendering compositing of packed ray samples, and its backward, as a burn custom op
//! with rayon kernels on the CPU and CubeCL kernels on the GPU.
//!
//! Rays are packed: ray r owns samples `offsets[r]..offsets[r+1]`, front to back, each with its
//! segment length `delta`. The output per ray is (R, G, B, A) = Σ wᵢ·(cᵢ, 1) with
//! wᵢ = Tᵢ·(1 − exp(−σᵢδᵢ)) and Tᵢ the transmittance before sample i.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::{DType, Shape, Tensor, TensorData};
use burn_cubecl::CubeBackend;
use burn_cubecl::cubecl::{CubeDim, calculate_cube_count_elemwise};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::{empty_device_dtype, zeros_client};
use burn_cubecl::tensor::CubeTensor;
use rayon::prelude::*;

use crate::hashgrid::flex_values;

/// How samples group into rays, and their segment lengths. Built once per batch on the CPU.
#[derive(Debug, Clone, PartialEq)]
pub struct RayPacking {
    /// `rays + 1` entries; the last is the number of samples.
    pub offsets: Vec<u32>,
    pub deltas: Vec<f32>,
}

impl RayPacking {
    pub fn rays(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn samples(&self) -> usize {
        self.deltas.len()
    }
}

/// Samples of one ray.
fn span(packing: &RayPacking, r: usize) -> std::ops::Range<usize> {
    packing.offsets[r] as usize..packing.offsets[r + 1] as usize
}

/// CPU forward: `sigma` [n], `rgb` [n,3] → [rays, 4].
pub fn composite_cpu(packing: &RayPacking, sigma: &[f32], rgb: &[f32]) -> Vec<f32> {
    let mut out = vec![0f32; packing.rays() * 4];
    out.par_chunks_mut(4).enumerate().for_each(|(r, o)| {
        let mut transmittance = 1f32;
        for i in span(packing, r) {
            let alpha = 1.0 - (-sigma[i] * packing.deltas[i]).exp();
            let w = transmittance * alpha;
            for c in 0..3 {
                o[c] += w * rgb[3 * i + c];
            }
            o[3] += w;
            transmittance *= 1.0 - alpha;
        }
    });
    out
}

/// CPU backward: (∂L/∂σ [n], ∂L/∂rgb [n,3]) from ∂L/∂out [rays,4] and the forward's output.
///
/// With C≤ᵢ the colour accumulated up to and including sample i,
/// ∂C/∂σᵢ = δᵢ·(Tᵢ₊₁·cᵢ − (C − C≤ᵢ)), and likewise for A with c = 1.
pub fn composite_backward_cpu(
    packing: &RayPacking,
    sigma: &[f32],
    rgb: &[f32],
    out: &[f32],
    grad_out: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let mut grad_sigma = vec![0f32; sigma.len()];
    let mut grad_rgb = vec![0f32; rgb.len()];
    // Rays own disjoint sample ranges: split both outputs along the offsets.
    let mut sigma_parts = Vec::with_capacity(packing.rays());
    let mut rgb_parts = Vec::with_capacity(packing.rays());
    let (mut gs, mut gc) = (grad_sigma.as_mut_slice(), grad_rgb.as_mut_slice());
    for r in 0..packing.rays() {
        let n = span(packing, r).len();
        let (a, b) = gs.split_at_mut(n);
        let (c, d) = gc.split_at_mut(3 * n);
        sigma_parts.push(a);
        rgb_parts.push(c);
        gs = b;
        gc = d;
    }
    sigma_parts
        .into_par_iter()
        .zip(rgb_parts)
        .enumerate()
        .for_each(|(r, (gs, gc))| {
            let total = &out[4 * r..4 * r + 4];
            let g = &grad_out[4 * r..4 * r + 4];
            let mut transmittance = 1f32;
            let mut acc = [0f32; 4];
            for (k, i) in span(packing, r).enumerate() {
                let alpha = 1.0 - (-sigma[i] * packing.deltas[i]).exp();
                let w = transmittance * alpha;
                let c = [rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2], 1.0];
                for ch in 0..4 {
                    acc[ch] += w * c[ch];
                }
                transmittance *= 1.0 - alpha;
                let mut d = 0f32;
                for ch in 0..4 {
                    d += g[ch] * (transmittance * c[ch] - (total[ch] - acc[ch]));
                }
                gs[k] = packing.deltas[i] * d;
                for ch in 0..3 {
                    gc[3 * k + ch] = w * g[ch];
                }
            }
        });
    (grad_sigma, grad_rgb)
}

/// Compositing as a backend op.
#[backend_extension(Cube, Fusion, Flex, Autodiff)]
pub trait CompositeOps: Backend {
    /// `sigma` [n], `rgb` [n,3] → [rays, 4].
    #[fusion(dtype = sigma, shape = Shape::new([packing.rays(), 4]))]
    fn composite(
        sigma: FloatTensor<Self>,
        rgb: FloatTensor<Self>,
        packing: Arc<RayPacking>,
    ) -> FloatTensor<Self>;
    /// (∂L/∂σ, ∂L/∂rgb) from the inputs, the forward's output and ∂L/∂out, as one [n,4] tensor
    /// (column 0: σ, columns 1..4: rgb).
    #[fusion(dtype = sigma, shape = Shape::new([packing.samples(), 4]))]
    fn composite_backward(
        sigma: FloatTensor<Self>,
        rgb: FloatTensor<Self>,
        out: FloatTensor<Self>,
        grad_out: FloatTensor<Self>,
        packing: Arc<RayPacking>,
    ) -> FloatTensor<Self>;
}

/// The GPU kernels (CubeCL): one unit per ray, front to back, as the CPU kernels.
mod kernel {
    use burn_cubecl::cubecl;
    use burn_cubecl::cubecl::prelude::*;

    #[cube(launch)]
    pub fn composite_rays(
        sigma: &Tensor<f32>,
        rgb: &Tensor<f32>,
        offsets: &Tensor<u32>,
        deltas: &Tensor<f32>,
        out: &mut Tensor<f32>,
    ) {
        let r = ABSOLUTE_POS;
        if r >= out.len() / 4 {
            terminate!();
        }
        let mut transmittance = 1.0f32;
        let mut red = 0.0f32;
        let mut green = 0.0f32;
        let mut blue = 0.0f32;
        let mut opacity = 0.0f32;
        let start = offsets[r] as usize;
        let end = offsets[r + 1] as usize;
        for i in start..end {
            let alpha = 1.0 - f32::exp(-sigma[i] * deltas[i]);
            let w = transmittance * alpha;
            red += w * rgb[3 * i];
            green += w * rgb[3 * i + 1];
            blue += w * rgb[3 * i + 2];
            opacity += w;
            transmittance *= 1.0 - alpha;
        }
        out[4 * r] = red;
        out[4 * r + 1] = green;
        out[4 * r + 2] = blue;
        out[4 * r + 3] = opacity;
    }

    /// [n, 4]: ∂L/∂σ, then ∂L/∂rgb, per sample (see `composite_backward_cpu`).
    #[cube(launch)]
    pub fn composite_rays_backward(
        sigma: &Tensor<f32>,
        rgb: &Tensor<f32>,
        offsets: &Tensor<u32>,
        deltas: &Tensor<f32>,
        out: &Tensor<f32>,
        grad_out: &Tensor<f32>,
        grad: &mut Tensor<f32>,
    ) {
        let r = ABSOLUTE_POS;
        if r >= out.len() / 4 {
            terminate!();
        }
        let mut transmittance = 1.0f32;
        let mut red = 0.0f32;
        let mut green = 0.0f32;
        let mut blue = 0.0f32;
        let mut opacity = 0.0f32;
        let start = offsets[r] as usize;
        let end = offsets[r + 1] as usize;
        for i in start..end {
            let alpha = 1.0 - f32::exp(-sigma[i] * deltas[i]);
            let w = transmittance * alpha;
            let c0 = rgb[3 * i];
            let c1 = rgb[3 * i + 1];
            let c2 = rgb[3 * i + 2];
            red += w * c0;
            green += w * c1;
            blue += w * c2;
            opacity += w;
            transmittance *= 1.0 - alpha;
            let d = grad_out[4 * r] * (transmittance * c0 - (out[4 * r] - red))
                + grad_out[4 * r + 1] * (transmittance * c1 - (out[4 * r + 1] - green))
                + grad_out[4 * r + 2] * (transmittance * c2 - (out[4 * r + 2] - blue))
                + grad_out[4 * r + 3] * (transmittance - (out[4 * r + 3] - opacity));
            grad[4 * i] = deltas[i] * d;
            grad[4 * i + 1] = w * grad_out[4 * r];
            grad[4 * i + 2] = w * grad_out[4 * r + 1];
            grad[4 * i + 3] = w * grad_out[4 * r + 2];
        }
    }
}

/// The packing's offsets and deltas on `like`'s device.
fn packing_on_device(packing: &RayPacking, like: &CubeTensor) -> (CubeTensor, CubeTensor) {
    let upload = |bytes: Vec<u8>, len: usize, dtype: DType| {
        CubeTensor::new_contiguous(
            like.client.clone(),
            like.device.clone(),
            Shape::new([len]),
            like.client.create_from_slice(&bytes),
            dtype,
        )
    };
    let offsets = packing
        .offsets
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let deltas = packing
        .deltas
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    (
        upload(offsets, packing.offsets.len(), DType::U32),
        upload(deltas, packing.deltas.len(), DType::F32),
    )
}

impl CompositeOps for CubeBackend {
    fn composite(sigma: CubeTensor, rgb: CubeTensor, packing: Arc<RayPacking>) -> CubeTensor {
        let (sigma, rgb) = (into_contiguous(sigma), into_contiguous(rgb));
        let (offsets, deltas) = packing_on_device(&packing, &sigma);
        let rays = packing.rays();
        let out = empty_device_dtype(
            sigma.client.clone(),
            sigma.device.clone(),
            Shape::new([rays, 4]),
            DType::F32,
        );
        let cube_dim = CubeDim::new(&sigma.client, rays);
        kernel::composite_rays::launch(
            &sigma.client,
            calculate_cube_count_elemwise(&sigma.client, rays, cube_dim),
            cube_dim,
            sigma.clone().into_tensor_arg(),
            rgb.into_tensor_arg(),
            offsets.into_tensor_arg(),
            deltas.into_tensor_arg(),
            out.clone().into_tensor_arg(),
        );
        out
    }

    fn composite_backward(
        sigma: CubeTensor,
        rgb: CubeTensor,
        out: CubeTensor,
        grad_out: CubeTensor,
        packing: Arc<RayPacking>,
    ) -> CubeTensor {
        let (sigma, rgb) = (into_contiguous(sigma), into_contiguous(rgb));
        let (out, grad_out) = (into_contiguous(out), into_contiguous(grad_out));
        let (offsets, deltas) = packing_on_device(&packing, &sigma);
        let rays = packing.rays();
        let grad = zeros_client(
            sigma.client.clone(),
            sigma.device.clone(),
            Shape::new([packing.samples(), 4]),
            DType::F32,
        );
        let cube_dim = CubeDim::new(&sigma.client, rays);
        kernel::composite_rays_backward::launch(
            &sigma.client,
            calculate_cube_count_elemwise(&sigma.client, rays, cube_dim),
            cube_dim,
            sigma.clone().into_tensor_arg(),
            rgb.into_tensor_arg(),
            offsets.into_tensor_arg(),
            deltas.into_tensor_arg(),
            out.into_tensor_arg(),
            grad_out.into_tensor_arg(),
            grad.clone().into_tensor_arg(),
        );
        grad
    }
}

impl CompositeOps for Flex {
    fn composite(sigma: FlexTensor, rgb: FlexTensor, packing: Arc<RayPacking>) -> FlexTensor {
        let (sigma, rgb) = (sigma.to_contiguous(), rgb.to_contiguous());
        let out = composite_cpu(&packing, flex_values(&sigma), flex_values(&rgb));
        FlexTensor::from_data(TensorData::new(out, [packing.rays(), 4]))
    }

    fn composite_backward(
        sigma: FlexTensor,
        rgb: FlexTensor,
        out: FlexTensor,
        grad_out: FlexTensor,
        packing: Arc<RayPacking>,
    ) -> FlexTensor {
        let [sigma, rgb, out, grad_out] = [sigma, rgb, out, grad_out].map(|t| t.to_contiguous());
        let (gs, gc) = composite_backward_cpu(
            &packing,
            flex_values(&sigma),
            flex_values(&rgb),
            flex_values(&out),
            flex_values(&grad_out),
        );
        let mut packed = Vec::with_capacity(gs.len() * 4);
        for (s, c) in gs.iter().zip(gc.chunks_exact(3)) {
            packed.extend_from_slice(&[*s, c[0], c[1], c[2]]);
        }
        FlexTensor::from_data(TensorData::new(packed, [gs.len(), 4]))
    }
}

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

/// Differentiable in `sigma` [n] and `rgb` [n,3]; returns [rays, 4] (colour, opacity).
pub fn composite(sigma: Tensor<1>, rgb: Tensor<2>, packing: Arc<RayPacking>) -> Tensor<2> {
    Tensor::from_dispatch(Dispatch::composite(
        sigma.into_dispatch(),
        rgb.into_dispatch(),
        packing,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

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

    #[test]
    fn gpu_kernels_match_the_cpu_kernels() {
        if !orbitmesh_render::gpu_tests::gpu_or_skip() {
            return;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        // Ragged rays, some empty, some long enough to turn opaque.
        let mut offsets = vec![0u32];
        for r in 0..500 {
            let len = if r % 7 == 0 {
                0
            } else {
                rng.random_range(1..80)
            };
            offsets.push(offsets[r] + len);
        }
        let n = *offsets.last().unwrap() as usize;
        let packing = Arc::new(RayPacking {
            offsets,
            deltas: (0..n).map(|_| 0.005 + 0.03 * rng.random::<f32>()).collect(),
        });
        let sigma: Vec<f32> = (0..n).map(|_| 60.0 * rng.random::<f32>()).collect();
        let rgb: Vec<f32> = (0..3 * n).map(|_| rng.random::<f32>()).collect();
        let upstream: Vec<f32> = (0..4 * 500).map(|_| rng.random::<f32>() - 0.5).collect();
        let run = |device: Device| {
            let s =
                Tensor::<1>::from_data(TensorData::new(sigma.clone(), [n]), &device).require_grad();
            let c = Tensor::<2>::from_data(TensorData::new(rgb.clone(), [n, 3]), &device)
                .require_grad();
            let out = composite(s.clone(), c.clone(), packing.clone());
            let up = Tensor::<2>::from_data(TensorData::new(upstream.clone(), [500, 4]), &device);
            let grads = (out.clone() * up).sum().backward();
            let gs = s.grad(&grads).unwrap().into_data();
            let gc = c.grad(&grads).unwrap().into_data();
            [out.into_data(), gs, gc].map(|d| d.try_into_vec::<f32>().unwrap())
        };
        let cpu = run(Device::flex().autodiff());
        let gpu = run(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice).autodiff());
        let differences = [0, 1, 2].map(|k| crate::relative_difference(&gpu[k], &cpu[k]));
        eprintln!("compositing, GPU against CPU (forward, ∂σ, ∂rgb): {differences:?}");
        assert!(differences.iter().all(|d| *d <= 1e-4));
    }

    #[test]
    fn gradient_matches_finite_differences_with_ragged_rays() {
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        // Rays of 0, 1, 5 and 30 samples.
        let offsets = vec![0u32, 0, 1, 6, 36];
        let n = 36;
        let packing = RayPacking {
            offsets,
            deltas: (0..n).map(|_| 0.02 + 0.03 * rng.random::<f32>()).collect(),
        };
        let mut sigma: Vec<f32> = (0..n).map(|_| 30.0 * rng.random::<f32>()).collect();
        let mut rgb: Vec<f32> = (0..3 * n).map(|_| rng.random::<f32>()).collect();
        let upstream: Vec<f32> = (0..16).map(|_| rng.random::<f32>() - 0.5).collect();
        let loss = |s: &[f32], c: &[f32]| -> f64 {
            composite_cpu(&packing, s, c)
                .iter()
                .zip(&upstream)
                .map(|(o, u)| f64::from(*o) * f64::from(*u))
                .sum()
        };
        let out = composite_cpu(&packing, &sigma, &rgb);
        assert_eq!(&out[0..4], &[0.0; 4], "a ray without samples is empty");
        let (gs, gc) = composite_backward_cpu(&packing, &sigma, &rgb, &out, &upstream);
        for i in 0..n {
            let h = 1e-2f32;
            let s0 = sigma[i];
            sigma[i] = s0 + h;
            let up = loss(&sigma, &rgb);
            sigma[i] = s0 - h;
            let down = loss(&sigma, &rgb);
            sigma[i] = s0;
            let numeric = (up - down) / (2.0 * f64::from(h));
            assert!(
                (numeric - f64::from(gs[i])).abs() < 2e-3 * (1.0 + numeric.abs()),
                "σ {i}: {} vs {numeric}",
                gs[i]
            );
            let c0 = rgb[3 * i + 1];
            rgb[3 * i + 1] = c0 + h;
            let up = loss(&sigma, &rgb);
            rgb[3 * i + 1] = c0 - h;
            let down = loss(&sigma, &rgb);
            rgb[3 * i + 1] = c0;
            let numeric = (up - down) / (2.0 * f64::from(h));
            assert!(
                (numeric - f64::from(gc[3 * i + 1])).abs() < 2e-3 * (1.0 + numeric.abs()),
                "rgb {i}: {} vs {numeric}",
                gc[3 * i + 1]
            );
        }
    }

    #[test]
    fn an_opaque_sample_hides_what_is_behind_it() {
        let packing = RayPacking {
            offsets: vec![0, 2],
            deltas: vec![1.0, 1.0],
        };
        let out = composite_cpu(&packing, &[1e4, 5.0], &[0.2, 0.4, 0.6, 1.0, 1.0, 1.0]);
        for (o, e) in out.iter().zip([0.2, 0.4, 0.6, 1.0]) {
            assert!((o - e).abs() < 1e-6);
        }
    }
}
