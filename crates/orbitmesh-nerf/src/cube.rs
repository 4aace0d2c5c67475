//! The GPU side of the NeRF's custom ops: CubeCL kernels (compiled for wgpu: Vulkan, Metal, DX12)
//! for the hash encoding and compositing, forward and backward, launched on burn's CubeBackend.
//! They compute exactly what the CPU kernels in `hashgrid` and `composite` do, one thread per
//! (point, level) or per ray; the backward's scatter-add into the table uses a compare-and-swap
//! loop, since float atomics are an optional GPU feature.

use std::sync::Arc;

use burn::backend::{Backend, TensorMetadata};
use burn::tensor::TensorData;
use burn_cubecl::CubeBackend;
use burn_cubecl::cubecl::prelude::*;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;

use crate::composite::{CompositeOps, RayPacking};
use crate::hashgrid::{HashGridConfig, HashGridOps};

const THREADS: u32 = 256;

#[cube]
fn atomic_add_f32(slot: &Atomic<u32>, value: f32) {
    if value != 0.0 {
        let mut seen = slot.load();
        loop {
            let expected = seen;
            let updated = (f32::from_bits(expected) + value).to_bits();
            seen = slot.compare_exchange_weak(expected, updated);
            if seen == expected {
                break;
            }
        }
    }
}

/// Row of one corner (`bits` = x·4 + y·2 + z) and its trilinear weight.
#[cube]
fn corner(
    cell: (u32, u32, u32),
    frac: (f32, f32, f32),
    bits: u32,
    resolution: u32,
    offset: u32,
    size: u32,
    dense: u32,
) -> (u32, f32) {
    let bx = (bits >> 2) & 1;
    let by = (bits >> 1) & 1;
    let bz = bits & 1;
    let x = cell.0 + bx;
    let y = cell.1 + by;
    let z = cell.2 + bz;
    let side = resolution + 1;
    let dense_index = (x * side + y) * side + z;
    let hashed = (x ^ (y * 2_654_435_761u32) ^ (z * 805_459_861u32)) & (size - 1);
    let index = select(dense == 1, dense_index, hashed);
    let wx = select(bx == 1, frac.0, 1.0 - frac.0);
    let wy = select(by == 1, frac.1, 1.0 - frac.1);
    let wz = select(bz == 1, frac.2, 1.0 - frac.2);
    (offset + index, wx * wy * wz)
}

#[cube]
fn cell_of(v: f32, resolution: u32) -> (u32, f32) {
    let x = f32::clamp(v, 0.0, 0.999_999) * f32::cast_from(resolution);
    let c = f32::floor(x);
    (u32::cast_from(c), x - c)
}

/// `levels` holds (resolution, offset, size, dense) per level.
#[cube(launch)]
fn hash_encode_kernel(
    points: &Tensor<f32>,
    table: &Tensor<f32>,
    levels: &Tensor<u32>,
    out: &mut Tensor<f32>,
    n_levels: u32,
    features: u32,
) {
    let n_levels = n_levels as usize;
    let features = features as usize;
    let pos = ABSOLUTE_POS;
    if pos >= points.len() / 3 * n_levels {
        terminate!();
    }
    let p = pos / n_levels;
    let l = pos % n_levels;
    let resolution = levels[4 * l];
    let (cx, fx) = cell_of(points[3 * p], resolution);
    let (cy, fy) = cell_of(points[3 * p + 1], resolution);
    let (cz, fz) = cell_of(points[3 * p + 2], resolution);
    for f in 0..features {
        let mut acc = 0.0f32;
        for bits in 0..8u32 {
            let (row, w) = corner(
                (cx, cy, cz),
                (fx, fy, fz),
                bits,
                resolution,
                levels[4 * l + 1],
                levels[4 * l + 2],
                levels[4 * l + 3],
            );
            acc += w * table[row as usize * features + f];
        }
        out[p * n_levels * features + l * features + f] = acc;
    }
}

#[cube(launch)]
fn hash_encode_backward_kernel(
    points: &Tensor<f32>,
    grad_out: &Tensor<f32>,
    levels: &Tensor<u32>,
    grad_table: &mut Tensor<Atomic<u32>>,
    n_levels: u32,
    features: u32,
) {
    let n_levels = n_levels as usize;
    let features = features as usize;
    let pos = ABSOLUTE_POS;
    if pos >= points.len() / 3 * n_levels {
        terminate!();
    }
    let p = pos / n_levels;
    let l = pos % n_levels;
    let resolution = levels[4 * l];
    let (cx, fx) = cell_of(points[3 * p], resolution);
    let (cy, fy) = cell_of(points[3 * p + 1], resolution);
    let (cz, fz) = cell_of(points[3 * p + 2], resolution);
    for bits in 0..8u32 {
        let (row, w) = corner(
            (cx, cy, cz),
            (fx, fy, fz),
            bits,
            resolution,
            levels[4 * l + 1],
            levels[4 * l + 2],
            levels[4 * l + 3],
        );
        for f in 0..features {
            let g = grad_out[p * n_levels * features + l * features + f];
            atomic_add_f32(&grad_table[row as usize * features + f], w * g);
        }
    }
}

#[cube(launch)]
fn composite_kernel(
    sigma: &Tensor<f32>,
    rgb: &Tensor<f32>,
    deltas: &Tensor<f32>,
    offsets: &Tensor<u32>,
    out: &mut Tensor<f32>,
) {
    let r = ABSOLUTE_POS;
    if r >= out.len() / 4 {
        terminate!();
    }
    let mut transmittance = 1.0f32;
    let mut acc_r = 0.0f32;
    let mut acc_g = 0.0f32;
    let mut acc_b = 0.0f32;
    let mut acc_a = 0.0f32;
    for i in offsets[r] as usize..offsets[r + 1] as usize {
        let alpha = 1.0 - f32::exp(-sigma[i] * deltas[i]);
        let w = transmittance * alpha;
        acc_r += w * rgb[3 * i];
        acc_g += w * rgb[3 * i + 1];
        acc_b += w * rgb[3 * i + 2];
        acc_a += w;
        transmittance *= 1.0 - alpha;
    }
    out[4 * r] = acc_r;
    out[4 * r + 1] = acc_g;
    out[4 * r + 2] = acc_b;
    out[4 * r + 3] = acc_a;
}

/// Writes [n,4]: ∂L/∂σ in column 0, ∂L/∂rgb in columns 1..4 (see `composite_backward_cpu`).
#[cube(launch)]
fn composite_backward_kernel(
    sigma: &Tensor<f32>,
    rgb: &Tensor<f32>,
    deltas: &Tensor<f32>,
    offsets: &Tensor<u32>,
    out: &Tensor<f32>,
    grad_out: &Tensor<f32>,
    grads: &mut Tensor<f32>,
) {
    let r = ABSOLUTE_POS;
    if r >= out.len() / 4 {
        terminate!();
    }
    let mut transmittance = 1.0f32;
    let mut acc_r = 0.0f32;
    let mut acc_g = 0.0f32;
    let mut acc_b = 0.0f32;
    let mut acc_a = 0.0f32;
    for i in offsets[r] as usize..offsets[r + 1] as usize {
        let alpha = 1.0 - f32::exp(-sigma[i] * deltas[i]);
        let w = transmittance * alpha;
        let (cr, cg, cb) = (rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]);
        acc_r += w * cr;
        acc_g += w * cg;
        acc_b += w * cb;
        acc_a += w;
        transmittance *= 1.0 - alpha;
        let d = grad_out[4 * r] * (transmittance * cr - (out[4 * r] - acc_r))
            + grad_out[4 * r + 1] * (transmittance * cg - (out[4 * r + 1] - acc_g))
            + grad_out[4 * r + 2] * (transmittance * cb - (out[4 * r + 2] - acc_b))
            + grad_out[4 * r + 3] * (transmittance - (out[4 * r + 3] - acc_a));
        grads[4 * i] = deltas[i] * d;
        grads[4 * i + 1] = w * grad_out[4 * r];
        grads[4 * i + 2] = w * grad_out[4 * r + 1];
        grads[4 * i + 3] = w * grad_out[4 * r + 2];
    }
}

fn launch_size(client: &burn_cubecl::tensor::Client, items: usize) -> (CubeCount, CubeDim) {
    let _ = client;
    let cubes = items.div_ceil(THREADS as usize).max(1) as u32;
    // Wide launches spread over two dimensions (a dimension holds at most 65535 cubes).
    let (x, y) = if cubes > 65_535 {
        (65_535, cubes.div_ceil(65_535))
    } else {
        (cubes, 1)
    };
    (CubeCount::Static(x, y, 1), CubeDim::new_1d(THREADS))
}

fn level_table(config: &HashGridConfig, like: &CubeTensor) -> CubeTensor {
    let rows: Vec<i32> = config
        .layout()
        .iter()
        .flat_map(|l| [l.resolution, l.offset, l.size, u32::from(l.dense)].map(|v| v as i32))
        .collect();
    let n = rows.len();
    let t = CubeBackend::int_from_data(
        TensorData::new(rows, [n]).convert_dtype(burn::tensor::DType::U32),
        &like.device,
    );
    into_contiguous(t)
}

fn upload_f32(values: Vec<f32>, like: &CubeTensor) -> CubeTensor {
    let n = values.len();
    CubeBackend::float_from_data(TensorData::new(values, [n]), &like.device)
}

fn upload_u32(values: &[u32], like: &CubeTensor) -> CubeTensor {
    let n = values.len();
    CubeBackend::int_from_data(TensorData::new(values.to_vec(), [n]), &like.device)
}

impl HashGridOps for CubeBackend {
    fn hash_encode(points: CubeTensor, table: CubeTensor, config: HashGridConfig) -> CubeTensor {
        let points = into_contiguous(points);
        let table = into_contiguous(table);
        let n = points.shape()[0];
        let levels = level_table(&config, &points);
        let out = empty_device_dtype(
            points.client.clone(),
            points.device.clone(),
            [n, config.output_dim()].into(),
            points.dtype,
        );
        let (count, dim) = launch_size(&points.client, n * config.levels as usize);
        hash_encode_kernel::launch(
            &points.client.clone(),
            count,
            dim,
            points.into_tensor_arg(),
            table.into_tensor_arg(),
            levels.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            config.levels,
            config.features,
        );
        out
    }

    fn hash_encode_backward(
        points: CubeTensor,
        grad_out: CubeTensor,
        config: HashGridConfig,
    ) -> CubeTensor {
        let points = into_contiguous(points);
        let grad_out = into_contiguous(grad_out);
        let n = points.shape()[0];
        let levels = level_table(&config, &points);
        let grad = CubeBackend::float_zeros(
            [config.table_rows(), config.features as usize].into(),
            &points.device,
            points.dtype.into(),
        );
        let (count, dim) = launch_size(&points.client, n * config.levels as usize);
        hash_encode_backward_kernel::launch(
            &points.client.clone(),
            count,
            dim,
            points.into_tensor_arg(),
            grad_out.into_tensor_arg(),
            levels.into_tensor_arg(),
            grad.clone().into_tensor_arg(),
            config.levels,
            config.features,
        );
        grad
    }
}

impl CompositeOps for CubeBackend {
    fn composite(sigma: CubeTensor, rgb: CubeTensor, packing: Arc<RayPacking>) -> CubeTensor {
        let sigma = into_contiguous(sigma);
        let rgb = into_contiguous(rgb);
        let deltas = upload_f32(packing.deltas.clone(), &sigma);
        let offsets = upload_u32(&packing.offsets, &sigma);
        let out = empty_device_dtype(
            sigma.client.clone(),
            sigma.device.clone(),
            [packing.rays(), 4].into(),
            sigma.dtype,
        );
        let (count, dim) = launch_size(&sigma.client, packing.rays());
        composite_kernel::launch(
            &sigma.client.clone(),
            count,
            dim,
            sigma.into_tensor_arg(),
            rgb.into_tensor_arg(),
            deltas.into_tensor_arg(),
            offsets.into_tensor_arg(),
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
        let sigma = into_contiguous(sigma);
        let rgb = into_contiguous(rgb);
        let out = into_contiguous(out);
        let grad_out = into_contiguous(grad_out);
        let deltas = upload_f32(packing.deltas.clone(), &sigma);
        let offsets = upload_u32(&packing.offsets, &sigma);
        let grads = CubeBackend::float_zeros(
            [packing.samples(), 4].into(),
            &sigma.device,
            sigma.dtype.into(),
        );
        let (count, dim) = launch_size(&sigma.client, packing.rays());
        composite_backward_kernel::launch(
            &sigma.client.clone(),
            count,
            dim,
            sigma.into_tensor_arg(),
            rgb.into_tensor_arg(),
            deltas.into_tensor_arg(),
            offsets.into_tensor_arg(),
            out.into_tensor_arg(),
            grad_out.into_tensor_arg(),
            grads.clone().into_tensor_arg(),
        );
        grads
    }
}
