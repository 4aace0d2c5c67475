//! The hash-grid encoding on the GPU: the CubeCL kernels and their launch, one unit per point and
//! one launch per level; the CubeBackend's implementation of [`HashGridOps`].

use burn::tensor::{DType, Shape};
use burn_cubecl::CubeBackend;
use burn_cubecl::cubecl::{CubeCount, CubeDim, calculate_cube_count_elemwise};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::{empty_device_dtype, zeros_client};
use burn_cubecl::tensor::CubeTensor;

use super::{HashGridConfig, HashGridOps, table_shape};

/// The GPU kernels (CubeCL, so they run wherever burn's wgpu backend does): one unit per point
/// and one launch per level, the same arithmetic as `corners` in `cpu.rs`.
mod kernel {
    use burn_cubecl::cubecl;
    use burn_cubecl::cubecl::prelude::*;

    /// One level's shape, as the kernels take it.
    #[derive(CubeType, CubeLaunch, Clone, Copy)]
    pub struct LevelArgs {
        pub resolution: u32,
        /// First table row of the level.
        pub offset: u32,
        /// Rows of a hashed level minus one (a power of two); unused on a dense level.
        pub mask: u32,
        /// 1 when the level is stored densely.
        pub dense: u32,
        /// The level's first output column.
        pub column: u32,
        pub features: u32,
    }

    /// The cell coordinate and the fraction within it of one coordinate, clamped as on the CPU.
    #[cube]
    fn split(v: f32, resolution: u32) -> (u32, f32) {
        let x = clamp(v, 0.0, 0.999_999) * f32::cast_from(resolution);
        let c = u32::cast_from(x);
        (c, x - f32::cast_from(c))
    }

    /// Table row and trilinear weight of corner `k` (x = bit 2, y = bit 1, z = bit 0) around
    /// point `i`.
    #[cube]
    fn corner(points: &Tensor<f32>, i: usize, k: u32, level: &LevelArgs) -> (u32, f32) {
        let (cx, fx) = split(points[3 * i], level.resolution);
        let (cy, fy) = split(points[3 * i + 1], level.resolution);
        let (cz, fz) = split(points[3 * i + 2], level.resolution);
        let (bx, by, bz) = ((k >> 2) & 1, (k >> 1) & 1, k & 1);
        let (x, y, z) = (cx + bx, cy + by, cz + bz);
        let wx = if bx == 1 { fx } else { 1.0 - fx };
        let wy = if by == 1 { fy } else { 1.0 - fy };
        let wz = if bz == 1 { fz } else { 1.0 - fz };
        let side = level.resolution + 1;
        let index = if level.dense == 1 {
            (x * side + y) * side + z
        } else {
            (x ^ (y * 2_654_435_761u32) ^ (z * 805_459_861u32)) & level.mask
        };
        (level.offset + index, wx * wy * wz)
    }

    #[cube(launch)]
    pub fn encode_level(
        points: &Tensor<f32>,
        table: &Tensor<f32>,
        output: &mut Tensor<f32>,
        level: LevelArgs,
        dim: u32,
    ) {
        let i = ABSOLUTE_POS;
        if i >= points.len() / 3 {
            terminate!();
        }
        let features = level.features as usize;
        for f in 0..features {
            output[i * dim as usize + level.column as usize + f] = 0.0;
        }
        for k in 0..8u32 {
            let (row, w) = corner(points, i, k, &level);
            for f in 0..features {
                let o = i * dim as usize + level.column as usize + f;
                output[o] += w * table[row as usize * features + f];
            }
        }
    }

    /// Scatter-adds into `grad` (f32 bits held in u32 atomics: a compare-and-swap loop works on
    /// every GPU, float atomics do not).
    #[cube(launch)]
    pub fn encode_level_backward(
        points: &Tensor<f32>,
        grad_out: &Tensor<f32>,
        grad: &mut Tensor<Atomic<u32>>,
        level: LevelArgs,
        dim: u32,
    ) {
        let i = ABSOLUTE_POS;
        if i >= points.len() / 3 {
            terminate!();
        }
        let features = level.features as usize;
        for k in 0..8u32 {
            let (row, w) = corner(points, i, k, &level);
            for f in 0..features {
                let add = w * grad_out[i * dim as usize + level.column as usize + f];
                if add != 0.0 {
                    let slot = &grad[row as usize * features + f];
                    let mut seen = slot.load();
                    loop {
                        let sum = u32::reinterpret(f32::reinterpret(seen) + add);
                        let before = slot.compare_exchange_weak(seen, sum);
                        if before == seen {
                            break;
                        }
                        seen = before;
                    }
                }
            }
        }
    }
}

impl HashGridOps for CubeBackend {
    fn hash_encode(points: CubeTensor, table: CubeTensor, config: HashGridConfig) -> CubeTensor {
        let points = into_contiguous(points);
        let table = into_contiguous(table);
        let n = points.meta.shape()[0];
        let dim = config.output_dim();
        let output = empty_device_dtype(
            points.client.clone(),
            points.device.clone(),
            Shape::new([n, dim]),
            DType::F32,
        );
        per_level(&points, &config, |cubes, cube_dim, level| {
            kernel::encode_level::launch(
                &points.client,
                cubes,
                cube_dim,
                points.clone().into_tensor_arg(),
                table.clone().into_tensor_arg(),
                output.clone().into_tensor_arg(),
                level,
                dim as u32,
            );
        });
        output
    }

    fn hash_encode_backward(
        points: CubeTensor,
        grad_out: CubeTensor,
        config: HashGridConfig,
    ) -> CubeTensor {
        let points = into_contiguous(points);
        let grad_out = into_contiguous(grad_out);
        let grad = zeros_client(
            points.client.clone(),
            points.device.clone(),
            table_shape(&config),
            DType::F32,
        );
        per_level(&points, &config, |cubes, cube_dim, level| {
            kernel::encode_level_backward::launch(
                &points.client,
                cubes,
                cube_dim,
                points.clone().into_tensor_arg(),
                grad_out.clone().into_tensor_arg(),
                grad.clone().into_tensor_arg(),
                level,
                config.output_dim() as u32,
            );
        });
        grad
    }
}

/// Calls `launch` once per level with a grid of one unit per point and the level's arguments.
fn per_level(
    points: &CubeTensor,
    config: &HashGridConfig,
    mut launch: impl FnMut(CubeCount, CubeDim, kernel::LevelArgsLaunch),
) {
    let n = points.meta.shape()[0];
    let cube_dim = CubeDim::new(&points.client, n);
    let cubes = calculate_cube_count_elemwise(&points.client, n, cube_dim);
    for (l, level) in config.layout().iter().enumerate() {
        let args = kernel::LevelArgsLaunch::new(
            level.resolution,
            level.offset,
            level.size.wrapping_sub(1),
            u32::from(level.dense),
            l as u32 * config.features,
            config.features,
        );
        launch(cubes.clone(), cube_dim, args);
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use crate::ops::hashgrid::hash_encode;
    use crate::ops::hashgrid::tests::{random_points, small, tensor};

    #[test]
    fn gpu_kernels_match_the_cpu_kernels() {
        if !orbitmesh_render::gpu_tests::gpu_or_skip() {
            return;
        }
        let config = small();
        let n = 4000;
        // Points on the cube's faces and corners too, where the clamping decides the cell.
        let mut points = random_points(n, 3);
        points[..9].copy_from_slice(&[0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.5, 1.0]);
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let rows = config.table_rows();
        let table_values: Vec<f32> = (0..rows * 2).map(|_| rng.random::<f32>() - 0.5).collect();
        // Positive, so a table row's gradient is a sum without cancellation and the comparison
        // measures the kernels, not the order in which the GPU's atomics happen to add.
        let upstream: Vec<f32> = (0..n * config.output_dim())
            .map(|_| rng.random::<f32>())
            .collect();
        let run = |device: Device| {
            let table = tensor(table_values.clone(), [rows, 2], &device).require_grad();
            let out = hash_encode(
                tensor(points.clone(), [n, 3], &device),
                table.clone(),
                config,
            );
            let up = tensor(upstream.clone(), [n, config.output_dim()], &device);
            let grads = (out.clone() * up).sum().backward();
            let grad = table.grad(&grads).expect("table gradient");
            (
                out.into_data().try_into_vec::<f32>().unwrap(),
                grad.into_data().try_into_vec::<f32>().unwrap(),
            )
        };
        let (out_cpu, grad_cpu) = run(Device::flex().autodiff());
        let (out_gpu, grad_gpu) =
            run(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice).autodiff());
        let forward = crate::relative_difference(&out_gpu, &out_cpu);
        let backward = crate::relative_difference(&grad_gpu, &grad_cpu);
        eprintln!("hash encoding, GPU against CPU: forward {forward:.2e}, gradient {backward:.2e}");
        assert!(forward <= 1e-4 && backward <= 1e-4);
    }
}
