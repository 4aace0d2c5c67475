//! What the device-parity tests of the model crates (IS-Net's, SV3D's) share: the tolerances each
//! device is held to, the wgpu device where there is one, and the comparison of two tensors.

use burn::tensor::{Device, DeviceKind, Tensor};

/// What the parity tests hold each device to, relative to the largest expected magnitude. Flex
/// computes in f32 much as PyTorch's CPU run did; the wgpu kernels (llvmpipe in CI) sum in other
/// orders and fuse element-wise chains, and the issue allows them 1e-3.
pub const FLEX_REL: f32 = 1e-4;
pub const WGPU_REL: f32 = 1e-3;

/// The default wgpu adapter (llvmpipe on a machine without a GPU; `CUBECL_WGPU_DEFAULT_DEVICE`
/// picks another), or `None` (with the skip line of `gpu_or_skip`) where there is none: burn
/// would panic on first use.
pub fn wgpu() -> Option<Device> {
    orbitmesh_render::gpu_tests::gpu_or_skip().then(|| Device::wgpu(DeviceKind::DefaultDevice))
}

/// Asserts `got` matches `expected` to `rel` of the largest expected magnitude.
pub fn assert_close<const D: usize>(what: &str, got: Tensor<D>, expected: Tensor<D>, rel: f32) {
    assert_eq!(got.dims(), expected.dims(), "{what}: shapes differ");
    let got: Vec<f32> = got.into_data().try_to_vec().unwrap();
    let expected: Vec<f32> = expected.into_data().try_to_vec().unwrap();
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    let (worst, at) = got
        .iter()
        .zip(&expected)
        .map(|(g, e)| (g - e).abs())
        .enumerate()
        .fold((0f32, 0), |(w, at), (i, d)| {
            if d > w || d.is_nan() { (d, i) } else { (w, at) }
        });
    // Printed so that `--nocapture` shows the headroom each device leaves under its tolerance.
    eprintln!("{what}: max relative difference {:.2e}", worst / scale);
    assert!(
        worst <= rel * scale,
        "{what}: max difference {worst:e} at {at} (got {}, expected {}) exceeds {rel:e} × {scale:e}",
        got[at],
        expected[at]
    );
}
