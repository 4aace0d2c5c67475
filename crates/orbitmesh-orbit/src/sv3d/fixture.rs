//! The SV3D parity fixtures (`shared/fixtures/sv3d-tiny`: a tiny configuration with random
//! weights in the real checkpoint's layout, and one recorded run of the reference code), read in
//! place. Found through `ORBITMESH_SV3D_FIXTURES`, else in a `shared/fixtures/sv3d-tiny` beside
//! any folder above this crate; tests skip with a message where there is none.

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::tensor::{Device, DeviceKind, Tensor, TensorData};

use super::{Sv3dConfig, Variant, Weights};

pub struct Fixture {
    pub config: Sv3dConfig,
    pub weights: Weights,
    /// The recorded run (`sv3d_tiny_io.safetensors`).
    pub io: Weights,
    pub device: Device,
}

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

/// The official checkpoint's tensors for `variant`, by name and shape, and sv3d_p's parameter
/// count, from the fixtures' `sv3d_p_manifest.json`; `None` (with a skip line) without it.
pub fn manifest(variant: Variant) -> Option<(BTreeMap<String, Vec<usize>>, u64)> {
    let Some(dir) = folder() else {
        eprintln!("skipped: no shared/fixtures/sv3d-tiny (set ORBITMESH_SV3D_FIXTURES)");
        return None;
    };
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("sv3d_p_manifest.json")).unwrap())
            .unwrap();
    let mut tensors: BTreeMap<String, Vec<usize>> =
        serde_json::from_value(manifest["sv3d_p"].clone()).unwrap();
    if variant == Variant::U {
        let differs: BTreeMap<String, Vec<usize>> =
            serde_json::from_value(manifest["sv3d_u_differs"].clone()).unwrap();
        tensors.extend(differs);
    }
    Some((tensors, manifest["parameters"].as_u64().unwrap()))
}

pub fn folder() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("ORBITMESH_SV3D_FIXTURES") {
        return Some(PathBuf::from(dir));
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared/fixtures/sv3d-tiny"))
        .find(|d| d.join("sv3d_tiny.safetensors").is_file())
}

/// The fixtures on `device`, or `None` (with a message) where they are not on this machine.
pub fn fixture(device: &Device) -> Option<Fixture> {
    let Some(dir) = folder() else {
        eprintln!("skipped: no shared/fixtures/sv3d-tiny (set ORBITMESH_SV3D_FIXTURES)");
        return None;
    };
    let config = std::fs::read_to_string(dir.join("sv3d_tiny_config.json")).unwrap();
    Some(Fixture {
        config: Sv3dConfig::from_json(&config).unwrap(),
        weights: Weights::open(&dir.join("sv3d_tiny.safetensors"), device).unwrap(),
        io: Weights::open(&dir.join("sv3d_tiny_io.safetensors"), device).unwrap(),
        device: device.clone(),
    })
}

impl Fixture {
    /// One recorded tensor.
    pub fn io<const D: usize>(&self, name: &str) -> Tensor<D> {
        let (values, shape) = self.io.read(name).unwrap();
        let shape: [usize; D] = shape
            .try_into()
            .unwrap_or_else(|s| panic!("{name}: rank of {s:?} is not {D}"));
        Tensor::from_data(TensorData::new(values, shape), &self.device)
    }
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
