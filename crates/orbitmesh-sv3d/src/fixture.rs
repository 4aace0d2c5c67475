//! The SV3D parity fixtures (`shared/fixtures/sv3d-tiny`: a tiny configuration with random
//! weights in the real checkpoint's layout, and one recorded run of the reference code), read in
//! place. Found through `ORBITMESH_SV3D_FIXTURES`, else in a `shared/fixtures/sv3d-tiny` beside
//! any folder above this crate; tests skip with a message where there is none.

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};

use super::{Sv3dConfig, Variant, Weights};

pub struct Fixture {
    pub config: Sv3dConfig,
    pub weights: Weights,
    /// The recorded run (`sv3d_tiny_io.safetensors`).
    pub io: Weights,
    pub device: Device,
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
