//! A full-size SV3D checkpoint with seeded random weights, in the official file's layout: every
//! tensor of `sv3d_p.safetensors` (or `sv3d_u`) by name and shape, the leftovers the model does
//! not read included, so the loader, the memory and the speed of the real model can be measured
//! without the real weights (no model hub is reachable where orbitmesh is tested).
//!
//! Values are scaled so activations stay of order one through the whole network, as a trained
//! model's do: matrices and kernels are N(0, gain²/fan_in) (LeCun's rule: a layer then keeps its
//! input's variance), norm scales 1 + 0.05·N, biases 0.02·N. The residual adds are the only growth
//! left, so an activation's scale grows like the square root of the number of blocks above it
//! (tens at most), far below f16's 65,504. A `gain` above one multiplies that growth per layer and
//! makes the half-precision model overflow on purpose (a test of how NaN frames are reported).
//!
//! The file is streamed: one tensor in memory at a time, written under a temporary name and renamed.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use burn::tensor::Device;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::model::standard_normal;
use super::{Sv3d, Sv3dConfig, Sv3dError, Variant, Weights, prefix};

/// How the synthetic file stores its tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredType {
    F16,
    F32,
}

impl StoredType {
    fn name(self) -> &'static str {
        match self {
            Self::F16 => "F16",
            Self::F32 => "F32",
        }
    }

    fn bytes(self) -> usize {
        match self {
            Self::F16 => 2,
            Self::F32 => 4,
        }
    }
}

/// What to write.
#[derive(Clone, Copy, Debug)]
pub struct SyntheticOptions {
    pub variant: Variant,
    pub stored: StoredType,
    pub seed: u64,
    /// Multiplies every matrix and kernel (1 keeps activations of order one).
    pub gain: f32,
}

/// What was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyntheticSummary {
    pub tensors: usize,
    pub parameters: usize,
    pub bytes: u64,
}

/// Every tensor of the official checkpoint, by name and shape, sorted by name: the ones the
/// model reads (asked of a shapes-only [`Weights`], so the list cannot drift from the loader) and
/// the leftovers the official files also hold.
pub fn checkpoint_tensors(variant: Variant) -> Result<Vec<(String, Vec<usize>)>, Sv3dError> {
    let weights = Weights::shapes_only(&Device::flex());
    let config = Sv3dConfig::sv3d(variant);
    let (z, clip) = (config.vae.z_channels, config.open_clip.embed_dim);
    Sv3d::from_weights(&weights, config, variant)?;
    let mut tensors: BTreeMap<String, Vec<usize>> = weights.requested().into_iter().collect();
    // The conditioner's autoencoder keeps a decoder the model never runs (it decodes with
    // first_stage_model's, the same architecture) and its post-quantisation convolution.
    let decoder = format!("{}.", prefix::DECODER);
    let leftover_decoder: Vec<_> = tensors
        .iter()
        .filter_map(|(name, shape)| {
            let rest = name.strip_prefix(&decoder)?;
            Some((format!("{}.decoder.{rest}", prefix::ENCODER), shape.clone()))
        })
        .collect();
    tensors.extend(leftover_decoder);
    tensors.insert(
        format!("{}.post_quant_conv.weight", prefix::ENCODER),
        vec![z, z, 1, 1],
    );
    tensors.insert(format!("{}.post_quant_conv.bias", prefix::ENCODER), vec![z]);
    // OpenCLIP ViT-H/14's text tower was deleted from the embedder, all but these.
    let text = [
        ("positional_embedding", vec![77, clip]),
        ("text_projection", vec![clip, clip]),
        ("logit_scale", vec![]),
        ("token_embedding.weight", vec![49408, clip]),
        ("ln_final.weight", vec![clip]),
        ("ln_final.bias", vec![clip]),
    ];
    for (name, shape) in text {
        tensors.insert(format!("{}.{name}", prefix::CLIP), shape);
    }
    Ok(tensors.into_iter().collect())
}

/// Writes the synthetic checkpoint to `path` (through a temporary file in its folder).
/// `progress(bytes_written, bytes_total)` is called after each tensor.
pub fn write_synthetic(
    path: &Path,
    options: SyntheticOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<SyntheticSummary, Sv3dError> {
    let tensors = checkpoint_tensors(options.variant)?;
    write_streamed(path, &tensors, options, progress)
}

/// Writes `tensors` with [`tensor_bytes`]' values: the header first, then one tensor at a time.
fn write_streamed(
    path: &Path,
    tensors: &[(String, Vec<usize>)],
    options: SyntheticOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<SyntheticSummary, Sv3dError> {
    let width = options.stored.bytes();
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, shape) in tensors {
        let end = offset + shape.iter().product::<usize>() * width;
        header.insert(
            name.clone(),
            serde_json::json!({
                "dtype": options.stored.name(),
                "shape": shape,
                "data_offsets": [offset, end],
            }),
        );
        offset = end;
    }
    header.insert(
        "__metadata__".into(),
        serde_json::json!({
            "format": "pt",
            "orbitmesh": format!(
                "synthetic SV3D ({}), seed {}, gain {}: random weights, not a trained model",
                options.variant.name(),
                options.seed,
                options.gain,
            ),
        }),
    );
    let mut header = serde_json::Value::Object(header).to_string().into_bytes();
    // The data starts 8-byte aligned, as the safetensors writer leaves it.
    header.resize(header.len().next_multiple_of(8), b' ');
    let total = (8 + header.len() + offset) as u64;
    orbitmesh_geom::io::write_atomic(path, |out| {
        out.write_all(&(header.len() as u64).to_le_bytes())?;
        out.write_all(&header)?;
        let mut written = (8 + header.len()) as u64;
        for (name, shape) in tensors {
            let bytes = tensor_bytes(name, shape, options);
            out.write_all(&bytes)?;
            written += bytes.len() as u64;
            progress(written, total);
        }
        Ok(())
    })?;
    Ok(SyntheticSummary {
        tensors: tensors.len(),
        parameters: offset / width,
        bytes: total,
    })
}

/// Values drawn in blocks of this many, each from its own stream, so the file is the same
/// whatever the number of threads.
const BLOCK: usize = 1 << 20;

/// One tensor's stored bytes.
fn tensor_bytes(name: &str, shape: &[usize], options: SyntheticOptions) -> Vec<u8> {
    let count: usize = shape.iter().product();
    let value = initialiser(name, shape, options.gain);
    let stream = options.seed ^ fnv1a(name.as_bytes());
    let width = options.stored.bytes();
    let mut bytes = vec![0u8; count * width];
    bytes
        .par_chunks_mut(BLOCK * width)
        .enumerate()
        .for_each(|(block, out)| {
            let mut rng = ChaCha8Rng::seed_from_u64(stream);
            rng.set_stream(block as u64);
            for slot in out.chunks_exact_mut(width) {
                let v = value(standard_normal(&mut rng));
                match options.stored {
                    StoredType::F16 => slot.copy_from_slice(&half::f16::from_f32(v).to_le_bytes()),
                    StoredType::F32 => slot.copy_from_slice(&v.to_le_bytes()),
                }
            }
        });
    bytes
}

/// How a tensor's standard-normal draws become its values (see the module's comment).
fn initialiser(name: &str, shape: &[usize], gain: f32) -> impl Fn(f32) -> f32 + Sync + use<> {
    let last = name.rsplit('.').next().unwrap_or(name);
    let (mean, std) = match (shape.len(), last) {
        // OpenCLIP's temperature, ln(100), as trained.
        (0, _) => (100f32.ln(), 0.0),
        (1, "weight") => (1.0, 0.05),
        (1, "bias" | "in_proj_bias") => (0.0, 0.02),
        // Mixing logits between the spatial and temporal paths: both paths take part.
        (1, "mix_factor") => (0.0, 1.0),
        // The class token: of the order of the patch embeddings it joins.
        (1, _) => (0.0, 1.0 / (shape[0] as f32).sqrt()),
        _ => {
            let fan_in: usize = shape[1..].iter().product();
            (0.0, gain / (fan_in as f32).sqrt())
        }
    };
    move |n| mean + std * n
}

/// FNV-1a: a stable hash of a tensor's name, so each tensor has its own stream of values.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::super::fixture;
    use super::*;

    /// The synthetic file holds exactly the official checkpoint's tensors, by name and shape.
    #[test]
    fn the_synthetic_checkpoint_has_every_tensor_of_the_official_file() {
        for variant in [Variant::P, Variant::U] {
            let Some((expected, parameters_of_p)) = fixture::manifest(variant) else {
                return;
            };
            let written: BTreeMap<String, Vec<usize>> =
                checkpoint_tensors(variant).unwrap().into_iter().collect();
            assert_eq!(written, expected, "{variant:?}");
            if variant == Variant::P {
                let parameters: usize = written.values().map(|s| s.iter().product::<usize>()).sum();
                assert_eq!(parameters as u64, parameters_of_p);
            }
        }
    }

    /// A tensor's values follow its initialiser, are the same for the same seed whatever the
    /// thread count, differ for another seed, and read back through the model's loader.
    #[test]
    fn values_are_seeded_scaled_and_readable() {
        let options = SyntheticOptions {
            variant: Variant::P,
            stored: StoredType::F32,
            seed: 7,
            gain: 1.0,
        };
        let name = "model.diffusion_model.input_blocks.1.0.in_layers.2.weight";
        let shape = [320, 320, 3, 3];
        let bytes = tensor_bytes(name, &shape, options);
        let values: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let n = values.len() as f64;
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = values
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        let fan_in = 320.0 * 9.0;
        assert!(mean.abs() < 1e-3, "mean {mean}");
        assert!(
            (var * fan_in - 1.0).abs() < 0.01,
            "variance × fan_in {}",
            var * fan_in
        );
        let single = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| tensor_bytes(name, &shape, options));
        assert_eq!(single, bytes);
        let other = tensor_bytes(name, &shape, SyntheticOptions { seed: 8, ..options });
        assert_ne!(other, bytes);
        let norm = tensor_bytes("x.norm.weight", &[4096], options);
        let norm: Vec<f32> = norm
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert!(norm.iter().all(|v| (0.7..1.3).contains(v)), "{norm:?}");

        // A small file through the same writer, read back by the model's loader.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("two.safetensors");
        let half = SyntheticOptions {
            stored: StoredType::F16,
            ..options
        };
        let tensors = vec![
            (name.to_string(), shape.to_vec()),
            ("x.logit_scale".to_string(), vec![]),
        ];
        let mut calls = Vec::new();
        let summary = write_streamed(&path, &tensors, half, &mut |done, total| {
            calls.push((done, total))
        })
        .unwrap();
        assert_eq!(summary.parameters, values.len() + 1);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), summary.bytes);
        assert_eq!(calls.last(), Some(&(summary.bytes, summary.bytes)));
        let weights = Weights::open(&path, &Device::flex()).unwrap();
        let (read, stored) = weights.read(name).unwrap();
        assert_eq!(stored, shape);
        for (a, b) in read.iter().zip(&values) {
            assert!((a - b).abs() <= 1e-3 * b.abs().max(1e-2), "{a} vs {b}");
        }
        let (scale, _) = weights.read("x.logit_scale").unwrap();
        assert!((scale[0] - 100f32.ln()).abs() < 1e-2, "{scale:?}");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
    }
}
