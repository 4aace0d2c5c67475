//! SV3D (Voleti et al., Stability AI, 2024) in burn: the video diffusion model that turns one
//! image into a 21-frame orbit, loaded from the official `sv3d_p.safetensors` / `sv3d_u.safetensors`
//! by their own tensor names. Parts, in the order data flows through them:
//! - [`clip`]: OpenCLIP ViT-H/14's image tower and its preprocessing (the cross-attention token);
//! - [`vae`]: the VAE encoder (the conditioning image's latent) and the per-frame decoder;
//! - [`unet`]: the spatio-temporal `VideoUNet` and its timestep/camera vector embedding;
//! - [`sampler`]: the EDM discretisation, the v-prediction denoiser scaling, the triangle CFG guider
//!   and the Euler sampler.
//!
//! Around them: [`model`] (the whole model, its cameras and its input image), [`guidance`] (SV3D as
//! the fine stage's score distillation), [`synthetic`] (a full-size checkpoint of random weights)
//! and the tensor-size plans that keep the GPU path within its largest binding. The layers and the
//! checkpoint reader are `orbitmesh-nn`'s; SV3D as an orbit generator is `orbitmesh-orbit`'s.
//!
//! Every size comes from [`Sv3dConfig`]: [`Sv3dConfig::sv3d`] is the published model, and the
//! parity tests build a tiny one from `../shared/fixtures/sv3d-tiny` (the `fixture` module, which
//! the `fixture` feature opens to other crates' tests).

mod clip;
mod guidance;
mod model;
pub mod sampler;
mod synthetic;
mod unet;
mod vae;

#[cfg(any(test, feature = "fixture"))]
pub mod fixture;

use serde::Deserialize;

pub use guidance::{FRAMES_PER_BACKWARD, Sv3dGuidance};
pub use model::{SampleOptions, Sv3d, Sv3dPart, Variant, on_white, sv3d_cameras};
pub use orbitmesh_nn::weights::{Params, Weights, WeightsError};
pub use synthetic::{StoredType, SyntheticOptions, write_synthetic};
pub use unet::{UnetInputs, VideoUnet};
pub use vae::VaeDecoder;

/// What can go wrong loading or running SV3D.
#[derive(Debug, thiserror::Error)]
pub enum Sv3dError {
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("SV3D configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Write(#[from] orbitmesh_geom::GeomError),
    /// Views SV3D cannot make ([`sv3d_cameras`]): an orbit without the input view, or cameras
    /// other than its own asked of sv3d_u.
    #[error("{0}")]
    Cameras(String),
    /// Values that overflowed (weights too large for the precision, or a damaged checkpoint).
    #[error(
        "SV3D's {part} gave values that are not finite (NaN or infinity): the weights overflow \
         in this precision (try --precision f32) or the checkpoint is damaged"
    )]
    NotFinite { part: String },
}

/// The VideoUNet's hyper-parameters (sgm's `VideoUNet` arguments, same names).
#[derive(Clone, Debug, Deserialize)]
pub struct UnetConfig {
    pub adm_in_channels: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub model_channels: usize,
    pub attention_resolutions: Vec<usize>,
    pub num_res_blocks: usize,
    pub channel_mult: Vec<usize>,
    pub num_head_channels: usize,
    pub transformer_depth: usize,
    pub context_dim: usize,
    pub extra_ff_mix_layer: bool,
    pub video_kernel_size: Vec<usize>,
}

/// The VAE's `ddconfig` (sgm's `Encoder`/`Decoder` arguments, same names).
#[derive(Clone, Debug, Deserialize)]
pub struct VaeConfig {
    pub z_channels: usize,
    pub resolution: usize,
    pub in_channels: usize,
    pub out_ch: usize,
    pub ch: usize,
    pub ch_mult: Vec<usize>,
    pub num_res_blocks: usize,
    pub attn_resolutions: Vec<usize>,
    pub double_z: bool,
}

/// OpenCLIP's vision tower (`vision_cfg`) and the output embedding size.
#[derive(Clone, Debug, Deserialize)]
pub struct ClipConfig {
    pub embed_dim: usize,
    pub vision_cfg: ClipVisionConfig,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ClipVisionConfig {
    pub image_size: usize,
    pub layers: usize,
    pub width: usize,
    pub head_width: usize,
    pub patch_size: usize,
}

/// The whole model's sizes, in the layout of the fixtures' `sv3d_tiny_config.json`.
#[derive(Clone, Debug, Deserialize)]
pub struct Sv3dConfig {
    pub unet: UnetConfig,
    #[serde(rename = "vae_ddconfig")]
    pub vae: VaeConfig,
    pub open_clip: ClipConfig,
    /// Latents are scaled by this before the UNet and divided by it before the decoder.
    pub scale_factor: f64,
}

impl Sv3dConfig {
    /// The published sv3d_p or sv3d_u (`scripts/sampling/configs/sv3d_p.yaml`; OpenCLIP
    /// ViT-H-14); the two differ only in the vector conditioning's width.
    pub fn sv3d(variant: Variant) -> Self {
        Self {
            unet: UnetConfig {
                adm_in_channels: variant.adm_in_channels(),
                in_channels: 8,
                out_channels: 4,
                model_channels: 320,
                attention_resolutions: vec![4, 2, 1],
                num_res_blocks: 2,
                channel_mult: vec![1, 2, 4, 4],
                num_head_channels: 64,
                transformer_depth: 1,
                context_dim: 1024,
                extra_ff_mix_layer: true,
                video_kernel_size: vec![3, 1, 1],
            },
            vae: VaeConfig {
                z_channels: 4,
                resolution: 256,
                in_channels: 3,
                out_ch: 3,
                ch: 128,
                ch_mult: vec![1, 2, 4, 4],
                num_res_blocks: 2,
                attn_resolutions: vec![],
                double_z: true,
            },
            open_clip: ClipConfig {
                embed_dim: 1024,
                vision_cfg: ClipVisionConfig {
                    image_size: 224,
                    layers: 32,
                    width: 1280,
                    head_width: 80,
                    patch_size: 14,
                },
            },
            scale_factor: 0.18215,
        }
    }

    /// A configuration from JSON in the fixtures' layout.
    pub fn from_json(text: &str) -> Result<Self, Sv3dError> {
        serde_json::from_str(text).map_err(|e| Sv3dError::Config(e.to_string()))
    }
}

/// The checkpoint's name prefixes of each part.
pub mod prefix {
    pub const UNET: &str = "model.diffusion_model";
    pub const CLIP: &str = "conditioner.embedders.0.open_clip.model";
    pub const ENCODER: &str = "conditioner.embedders.1.encoder";
    pub const DECODER: &str = "first_stage_model.decoder";
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use burn::tensor::Device;

    use super::*;

    /// The full-size model asks for exactly the official checkpoint's tensors, by name and shape,
    /// apart from the ones [`Sv3d::scopes`] leaves out, without allocating its 9 GB.
    #[test]
    fn full_size_parameters_equal_the_checkpoint_manifest() {
        let scopes = Sv3d::scopes();
        let device = Device::flex();
        for variant in [Variant::P, Variant::U] {
            let weights = Weights::shapes_only(&device);
            Sv3d::from_weights(&weights, Sv3dConfig::sv3d(variant), variant).unwrap();
            let asked: BTreeMap<String, Vec<usize>> = weights.requested().into_iter().collect();
            let Some((mut expected, _)) = fixture::manifest(variant) else {
                return;
            };
            expected.retain(|name, _| scopes.iter().any(|s| name.starts_with(s.as_str())));
            let missing: Vec<_> = expected
                .keys()
                .filter(|k| !asked.contains_key(*k))
                .collect();
            let extra: Vec<_> = asked
                .keys()
                .filter(|k| !expected.contains_key(*k))
                .collect();
            assert!(
                missing.is_empty() && extra.is_empty(),
                "{variant:?}: not asked for {missing:?}; not in the checkpoint {extra:?}"
            );
            for (name, shape) in &expected {
                assert_eq!(&asked[name], shape, "{variant:?}: {name}");
            }
            let parameters: usize = asked.values().map(|s| s.iter().product::<usize>()).sum();
            assert!(parameters > 2_000_000_000, "{parameters}");
        }
    }

    /// At full size (21 frames of 576², both published variants' shapes), no tensor of one
    /// sampler step, one decoder chunk or one SDS step exceeds the GPU path's largest storage
    /// binding, in f16 (the GPU's default) or f32, with the default settings. Planned from
    /// shapes alone on the shapes-only model (no weights, nothing run).
    #[test]
    fn full_size_tensors_fit_the_largest_gpu_binding() {
        use burn::tensor::FloatDType;
        use orbitmesh_nn::layers::MAX_BINDING_BYTES;

        let device = Device::flex();
        let options = SampleOptions::default();
        let side = options.resolution as usize;
        for dtype in [FloatDType::F16, FloatDType::F32] {
            let weights = Weights::shapes_only(&device).with_dtype(dtype);
            let model =
                Sv3d::from_weights(&weights, Sv3dConfig::sv3d(Variant::P), Variant::P).unwrap();
            let mut sampler_step = model.tensor_plan();
            model.plan_sampler_step(&mut sampler_step, 21, side);
            let mut decoder_chunk = model.tensor_plan();
            model.plan_decode_chunk(&mut decoder_chunk, &options, side);
            let mut sds_step = model.tensor_plan();
            model.plan_guidance_step(&mut sds_step, 21, FRAMES_PER_BACKWARD, side);
            for (name, plan) in [
                ("sampler step", sampler_step),
                ("decoder chunk", decoder_chunk),
                ("SDS step", sds_step),
            ] {
                let (bytes, what) = plan.largest();
                eprintln!("{dtype:?} {name}: largest tensor {bytes} bytes, {what}");
                assert!(
                    bytes <= MAX_BINDING_BYTES,
                    "{dtype:?} {name}: {what} is {bytes} bytes, past the {MAX_BINDING_BYTES}-byte binding"
                );
            }
            // Without splitting attention, the first spatial transformer's scores alone
            // (21 frames × 5 heads × 5184²) would not fit: the split is what makes it pass.
            let mut unsplit = model.tensor_plan();
            unsplit.attention_budget = usize::MAX;
            model.plan_sampler_step(&mut unsplit, 21, side);
            let (bytes, what) = unsplit.largest();
            assert!(
                bytes > MAX_BINDING_BYTES && what.contains("attention scores"),
                "{what}"
            );
        }
    }
}
