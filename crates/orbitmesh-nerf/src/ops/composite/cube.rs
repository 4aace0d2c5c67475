//! Compositing on the GPU: the CubeCL kernels (one unit per ray, front to back) and their launch,
//! the CubeBackend's implementation of [`CompositeOps`].

use std::sync::Arc;

use burn::tensor::{DType, Shape};
use burn_cubecl::CubeBackend;
use burn_cubecl::cubecl::{CubeDim, calculate_cube_count_elemwise};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::{empty_device_dtype, zeros_client};
use burn_cubecl::tensor::CubeTensor;

use super::{CompositeOps, RayPacking};

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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use burn::tensor::{Device, Tensor, TensorData};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use crate::ops::composite::{RayPacking, composite};

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
}
