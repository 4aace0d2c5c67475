//! The whole SV3D model: one image in, an orbit of frames out, as the official sampling script
//! runs it (`scripts/sampling/simple_video_sample.py`), with our own seeded noise.

use std::ops::Range;
use std::path::Path;
use std::time::Instant;

use burn::tensor::{DType, Device, FloatDType, Tensor, TensorData};
use image::RgbaImage;
use image::imageops::FilterType;
use orbitmesh_nn::layers::{MAX_BINDING_BYTES, TensorPlan};
use orbitmesh_render::OrbitView;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::clip::ClipImageEncoder;
use super::sampler::{Conditioning, SamplerEvent, edm_sigmas, sample, triangle_scales};
use super::unet::{VideoUnet, timestep_embedding};
use super::vae::{VaeDecoder, VaeEncoder};
use super::{Sv3dConfig, Sv3dError, Weights, WeightsError, prefix};

/// The two published checkpoints: `sv3d_p` takes each frame's camera, `sv3d_u` only makes its own
/// fixed orbit (elevation 0). They differ only in the vector embedding's width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    P,
    U,
}

impl Variant {
    /// The vector conditioning's width: the augmentation's 256, plus 512 each for the polar angle
    /// and the azimuth in `sv3d_p`.
    pub fn adm_in_channels(self) -> usize {
        match self {
            Variant::P => 1280,
            Variant::U => 256,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Variant::P => "sv3d_p",
            Variant::U => "sv3d_u",
        }
    }
}

/// How an orbit is sampled.
#[derive(Clone, Debug)]
pub struct SampleOptions {
    pub steps: usize,
    pub seed: u64,
    /// Frames decoded at once: bounds the decoder's memory.
    pub decode_chunk: usize,
    /// The guidance scale at the orbit's far side (1 at the input view).
    pub max_guidance: f64,
    /// The frames' side: the published model was trained at 576².
    pub resolution: u32,
}

impl Default for SampleOptions {
    fn default() -> Self {
        Self {
            steps: 50,
            seed: 23,
            decode_chunk: 7,
            max_guidance: 2.5,
            resolution: 576,
        }
    }
}

/// The conditioning augmentation SV3D's script uses for both checkpoints.
const COND_AUG: f32 = 1e-5;
const SIGMA_MIN: f64 = 0.002;
const SIGMA_MAX: f64 = 700.0;
const RHO: f64 = 7.0;

/// SV3D's parts, loaded.
pub struct Sv3d {
    pub config: Sv3dConfig,
    pub variant: Variant,
    clip: ClipImageEncoder,
    encoder: VaeEncoder,
    unet: VideoUnet,
    decoder: VaeDecoder,
    device: Device,
}

impl Sv3d {
    /// The published model from `sv3d_p.safetensors` or `sv3d_u.safetensors` (which one, from the
    /// file), every tensor checked by name and shape, held in `dtype` (f16 halves the 9.4 GB of
    /// f32 weights; the sampler's arithmetic stays f32 either way).
    pub fn load(path: &Path, device: &Device, dtype: FloatDType) -> Result<Self, Sv3dError> {
        let weights = Weights::open(path, device)?.with_dtype(dtype);
        let variant = Self::variant_of(&weights, path, true)?;
        Self::from_weights(&weights, Sv3dConfig::sv3d(variant), variant)
    }

    /// A checkpoint of another size (a distilled or test model) from `path`, at `config`'s size.
    pub fn load_configured(
        path: &Path,
        config: Sv3dConfig,
        device: &Device,
        dtype: FloatDType,
    ) -> Result<Self, Sv3dError> {
        let weights = Weights::open(path, device)?.with_dtype(dtype);
        let variant = Self::variant_of(&weights, path, false)?;
        Self::from_weights(&weights, config, variant)
    }

    /// sv3d_p or sv3d_u, from the camera embedding's first layer: [1280, 1280] in sv3d_p,
    /// [1280, 256] in sv3d_u; at other sizes (not `published`) only its input width counts.
    fn variant_of(weights: &Weights, path: &Path, published: bool) -> Result<Variant, Sv3dError> {
        let label = format!("{}.label_emb.0.0.weight", prefix::UNET);
        match weights.shape(&label).as_deref() {
            Some([1280, 1280]) => Ok(Variant::P),
            Some([1280, 256]) => Ok(Variant::U),
            Some([_, 1280]) if !published => Ok(Variant::P),
            Some([_, 256]) if !published => Ok(Variant::U),
            other => Err(WeightsError::Tensors {
                path: path.to_path_buf(),
                problems: vec![format!(
                    "{label}: {other:?}, where sv3d_p has [1280, 1280] and sv3d_u [1280, 256]: \
                     not an SV3D checkpoint"
                )],
            }
            .into()),
        }
    }

    /// The model at `config`'s size from `weights`, or every problem with them.
    pub fn from_weights(
        weights: &Weights,
        config: Sv3dConfig,
        variant: Variant,
    ) -> Result<Self, Sv3dError> {
        let root = weights.root();
        let model = Self {
            clip: ClipImageEncoder::load(&root.at(prefix::CLIP), &config.open_clip),
            encoder: VaeEncoder::load(&root.at(prefix::ENCODER), &config.vae),
            unet: VideoUnet::load(&root.at(prefix::UNET), &config.unet),
            decoder: VaeDecoder::load(&root.at(prefix::DECODER), &config.vae),
            device: root.device().clone(),
            config,
            variant,
        };
        weights.finish(
            &Self::scopes()
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )?;
        Ok(model)
    }

    /// The checkpoint prefixes whose every tensor the model uses (the official files also hold
    /// the CLIP text tower's leftovers and the conditioner autoencoder's unused decoder).
    pub fn scopes() -> Vec<String> {
        let mut scopes = vec![
            ClipImageEncoder::scope(),
            prefix::UNET.to_string(),
            format!("{}.", prefix::DECODER),
        ];
        scopes.extend(VaeEncoder::scopes());
        scopes
    }

    pub(crate) fn clip(&self) -> &ClipImageEncoder {
        &self.clip
    }

    pub(crate) fn encoder(&self) -> &VaeEncoder {
        &self.encoder
    }

    pub(crate) fn unet(&self) -> &VideoUnet {
        &self.unet
    }

    /// The device the model's weights are on, where its inputs must be.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The vector conditioning per frame (see [`Variant::adm_in_channels`]).
    pub fn vector(&self, polars_rad: &[f32], azimuths_rad: &[f32]) -> Tensor<2> {
        vector(self.variant, polars_rad, azimuths_rad, &self.device)
    }

    /// An orbit of `cameras` (polar, azimuth in radians; the input view, azimuth 0, last, as SV3D
    /// orders them) around `image` ([1, 3, H, W] in [−1, 1] on white). Returns the frames
    /// [frames, 3, H, W] in [0, 1], the last being the input image itself (as the official
    /// script does). `on_part` sees each part as it finishes, with its seconds; a part whose
    /// result is not finite (weights that overflow in this precision) stops it with
    /// [`Sv3dError::NotFinite`] naming the part.
    pub fn generate(
        &self,
        image: Tensor<4>,
        cameras: &[(f32, f32)],
        options: &SampleOptions,
        on_part: impl FnMut(&Sv3dPart, f64),
    ) -> Result<Tensor<4>, Sv3dError> {
        let mut parts = PartClock {
            on_part,
            since: Instant::now(),
        };
        let frames = cameras.len();
        let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
        let mut gaussian = |dims: [usize; 4]| {
            let values: Vec<f32> = (0..dims.iter().product::<usize>())
                .map(|_| standard_normal(&mut rng))
                .collect();
            Tensor::<4>::from_data(TensorData::new(values, dims), &self.device)
        };
        let cond_frames = image.clone() + gaussian(image.dims()) * f64::from(COND_AUG);
        let token = self.clip.forward(image.clone());
        parts.done(Sv3dPart::Clip, &token)?;
        let latent = self.encoder.forward(cond_frames);
        parts.done(Sv3dPart::Encoder, &latent)?;
        let [_, z, h, w] = latent.dims();
        let [_, k, d] = token.dims();
        let (polars, azimuths): (Vec<f32>, Vec<f32>) = cameras.iter().copied().unzip();
        let cond = Conditioning {
            context: token.expand([frames, k, d]),
            concat: latent.expand([frames, z, h, w]),
            vector: self.vector(&polars, &azimuths),
        };
        let sigmas = edm_sigmas(options.steps, SIGMA_MIN, SIGMA_MAX, RHO);
        let scales = triangle_scales(frames, 1.0, options.max_guidance);
        let noise = gaussian([frames, z, h, w]);
        let steps = options.steps;
        let latents = sample(
            &self.unet,
            &cond,
            noise,
            &sigmas,
            &scales,
            |event| match event {
                SamplerEvent::Call {
                    step,
                    conditional,
                    denoised,
                } => parts.done(
                    Sv3dPart::Unet {
                        step,
                        steps,
                        conditional,
                    },
                    denoised,
                ),
                SamplerEvent::Step { .. } => Ok(()),
            },
        )?;
        let chunk = self.decode_chunk(options, [z, h, w], self.decode_limit());
        let decoded = self.decoder.decode_chunked(
            latents / self.config.scale_factor,
            chunk,
            |range, rgb| {
                let part = Sv3dPart::Decoder {
                    frames: range,
                    of: frames,
                };
                parts.done(part, rgb)
            },
        )?;
        let [_, c, hh, ww] = decoded.dims();
        let decoded = decoded.slice([0..frames - 1, 0..c, 0..hh, 0..ww]);
        let frames = Tensor::cat(vec![decoded, image], 0);
        Ok(((frames + 1.0) / 2.0).clamp(0.0, 1.0))
    }

    /// How many parts [`Sv3d::generate`] reports for `frames` frames of `side`².
    pub fn parts(&self, frames: usize, side: usize, options: &SampleOptions) -> usize {
        let latent = self.latent_shape(side);
        let chunk = self.decode_chunk(options, latent, self.decode_limit());
        2 + 2 * options.steps + frames.div_ceil(chunk)
    }

    /// Frames decoded at once: at most `options.decode_chunk`, fewer where that many would hold
    /// a tensor past `limit` bytes ([`VaeDecoder::frames_per_chunk`]).
    fn decode_chunk(&self, options: &SampleOptions, latent: [usize; 3], limit: usize) -> usize {
        self.decoder
            .frames_per_chunk(options.decode_chunk, latent, limit)
    }

    /// The largest decoder tensor on this model's device: the GPU path's largest binding, or on
    /// the CPU [`CPU_DECODE_TENSOR_BYTES`].
    fn decode_limit(&self) -> usize {
        if self.device == Device::flex() {
            CPU_DECODE_TENSOR_BYTES
        } else {
            MAX_BINDING_BYTES
        }
    }

    /// An empty plan in the model's working precision, for the `plan_` methods.
    pub fn tensor_plan(&self) -> TensorPlan {
        TensorPlan::new(DType::from(self.unet.dtype()).size())
    }

    /// The tensors of one sampler step at `frames` frames of `side`²: one UNet call's (the
    /// unconditional and the conditional call run one after the other, on one branch each).
    pub fn plan_sampler_step(&self, plan: &mut TensorPlan, frames: usize, side: usize) {
        let [z, h, w] = self.latent_shape(side);
        let unet = &self.config.unet;
        let x = [frames, unet.in_channels, h, w];
        let y = [frames, unet.adm_in_channels, 1, 1];
        let context = [frames, 1, unet.context_dim];
        self.unet.plan(plan, [x, y], context, frames, |_, _| {});
        plan.tensor_f32("latent", &[frames, z, h, w]);
    }

    /// The tensors of one decoder chunk of [`Sv3d::generate`] at `side`² on the GPU path.
    pub fn plan_decode_chunk(&self, plan: &mut TensorPlan, options: &SampleOptions, side: usize) {
        let [z, h, w] = self.latent_shape(side);
        let chunk = self.decode_chunk(options, [z, h, w], MAX_BINDING_BYTES);
        self.decoder.plan(plan, [chunk, z, h, w]);
    }

    /// The tensors of one SDS step of the guidance ([`super::Sv3dGuidance`]) on `frames` frames of
    /// `side`²: the encoder over `frames_per_backward` frames at a time (its backward's
    /// gradients have the shapes of its activations) and one UNet call.
    pub fn plan_guidance_step(
        &self,
        plan: &mut TensorPlan,
        frames: usize,
        frames_per_backward: usize,
        side: usize,
    ) {
        self.encoder
            .plan(plan, [frames_per_backward, 3, side, side]);
        self.plan_sampler_step(plan, frames, side);
    }

    /// The latent [z, h, w] of a `side`² image.
    fn latent_shape(&self, side: usize) -> [usize; 3] {
        let vae = &self.config.vae;
        let down = 1 << (vae.ch_mult.len() - 1);
        [vae.z_channels, side / down, side / down]
    }
}

/// The largest decoder tensor on the CPU: its convolutions run one image at a time there, so
/// fewer frames per chunk cost no speed, and at 576² one frame's f32 activations at full
/// resolution are 340 MB each (several at once in each block).
const CPU_DECODE_TENSOR_BYTES: usize = 512 << 20;

/// A part of [`Sv3d::generate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sv3dPart {
    /// The CLIP image embedding (the cross-attention token).
    Clip,
    /// The VAE encoder's latent of the conditioning image.
    Encoder,
    /// One UNet call of step `step` (0-based) of `steps`: the unconditional branch, then the
    /// conditional one.
    Unet {
        step: usize,
        steps: usize,
        conditional: bool,
    },
    /// The VAE decoder on frames `frames` (0-based) of `of`.
    Decoder { frames: Range<usize>, of: usize },
}

impl std::fmt::Display for Sv3dPart {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Self::Clip => write!(f, "CLIP image encoder"),
            Self::Encoder => write!(f, "VAE encoder"),
            Self::Unet {
                step,
                steps,
                conditional,
            } => write!(
                f,
                "UNet step {}/{steps}, {}",
                step + 1,
                if *conditional {
                    "conditional"
                } else {
                    "unconditional"
                }
            ),
            Self::Decoder { frames, of } => {
                write!(
                    f,
                    "VAE decoder, frames {}–{} of {of}",
                    frames.start + 1,
                    frames.end
                )
            }
        }
    }
}

/// Times [`Sv3d::generate`]'s parts and checks each part's result.
struct PartClock<F> {
    on_part: F,
    since: Instant,
}

impl<F: FnMut(&Sv3dPart, f64)> PartClock<F> {
    fn done<const D: usize>(
        &mut self,
        part: Sv3dPart,
        result: &Tensor<D>,
    ) -> Result<(), Sv3dError> {
        // Reading back whether every value is finite also waits for a lazy device (wgpu) to
        // finish the part, so the time measured is the part's.
        if !result.clone().is_finite().all().into_scalar::<bool>() {
            return Err(Sv3dError::NotFinite {
                part: part.to_string(),
            });
        }
        (self.on_part)(&part, self.since.elapsed().as_secs_f64());
        self.since = Instant::now();
        Ok(())
    }
}

/// The vector conditioning: the embeddings of the conditioning augmentation (256) and, for
/// `sv3d_p`, of the polar angle and the azimuth (512 each), as sgm's `ConcatTimestepEmbedderND`s.
pub fn vector(
    variant: Variant,
    polars_rad: &[f32],
    azimuths_rad: &[f32],
    device: &Device,
) -> Tensor<2> {
    let frames = polars_rad.len();
    let aug = timestep_embedding(&vec![COND_AUG; frames], 256, 10_000.0);
    let width = variant.adm_in_channels();
    let mut out = Vec::with_capacity(frames * width);
    let (polar, azimuth) = match variant {
        Variant::P => (
            timestep_embedding(polars_rad, 512, 10_000.0),
            timestep_embedding(azimuths_rad, 512, 10_000.0),
        ),
        Variant::U => (Vec::new(), Vec::new()),
    };
    for f in 0..frames {
        out.extend_from_slice(&aug[f * 256..(f + 1) * 256]);
        if variant == Variant::P {
            out.extend_from_slice(&polar[f * 512..(f + 1) * 512]);
            out.extend_from_slice(&azimuth[f * 512..(f + 1) * 512]);
        }
    }
    Tensor::from_data(TensorData::new(out, [frames, width]), device)
}

/// One standard normal draw (Box–Muller): SV3D's noise cannot match torch's generator anyway, so
/// any good Gaussian from the seed will do.
pub(crate) fn standard_normal(rng: &mut impl Rng) -> f32 {
    let u: f64 = 1.0 - rng.random::<f64>();
    let v: f64 = rng.random();
    ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
}

/// SV3D's cameras for `views` around `input` ((polar, azimuth) in radians, azimuths relative to
/// the input view) and the order SV3D wants them in: ascending azimuth, the input view last.
pub fn sv3d_cameras(
    variant: Variant,
    input: OrbitView,
    views: &[OrbitView],
) -> Result<(Cameras, Vec<usize>), Sv3dError> {
    let azimuth = |v: &OrbitView| (v.azimuth_deg - input.azimuth_deg).rem_euclid(360.0);
    let last = views
        .iter()
        .position(|v| azimuth(v).min(360.0 - azimuth(v)) < 1e-6);
    let Some(last) = last else {
        return Err(Sv3dError::Cameras(
            "SV3D's orbit must include the input view (azimuth 0)".into(),
        ));
    };
    if variant == Variant::U {
        let fixed = views.len() == SV3D_FRAMES
            && views.iter().all(|v| v.elevation_deg.abs() < 1e-6)
            && input.elevation_deg.abs() < 1e-6;
        if !fixed {
            return Err(Sv3dError::Cameras(format!(
                "sv3d_u makes only its own orbit: {SV3D_FRAMES} frames at elevation 0 seen \
                 from an input at elevation 0 (use sv3d_p for other cameras)"
            )));
        }
    }
    let mut order: Vec<usize> = (0..views.len()).filter(|&i| i != last).collect();
    order.sort_by(|&a, &b| azimuth(&views[a]).total_cmp(&azimuth(&views[b])));
    order.push(last);
    let cameras = order
        .iter()
        .map(|&i| {
            let polar = (90.0 - views[i].elevation_deg).to_radians() as f32;
            let az = if i == last {
                0.0
            } else {
                azimuth(&views[i]).to_radians() as f32
            };
            (polar, az)
        })
        .collect();
    Ok((cameras, order))
}

/// Each frame's (polar, azimuth) in radians, in SV3D's order.
pub type Cameras = Vec<(f32, f32)>;

/// The frame count SV3D was trained on.
const SV3D_FRAMES: usize = 21;

/// The prepared RGBA image composited on white, `side`², as [1, 3, side, side] in [−1, 1].
pub fn on_white(prepared: &RgbaImage, side: u32, device: &Device) -> Tensor<4> {
    let resized = if prepared.dimensions() == (side, side) {
        prepared.clone()
    } else {
        image::imageops::resize(prepared, side, side, FilterType::Lanczos3)
    };
    let s = side as usize;
    let mut values = vec![0f32; 3 * s * s];
    for (x, y, p) in resized.enumerate_pixels() {
        let a = f32::from(p[3]) / 255.0;
        for c in 0..3 {
            let v = (f32::from(p[c]) / 255.0) * a + (1.0 - a);
            values[c * s * s + y as usize * s + x as usize] = v * 2.0 - 1.0;
        }
    }
    Tensor::from_data(TensorData::new(values, [1, 3, s, s]), device)
}

#[cfg(test)]
mod tests {
    use orbitmesh_nn::parity::{assert_close, wgpu};

    use super::*;
    use crate::fixture::{self, fixture};
    use crate::unet::UnetInputs;

    /// How far f16 weights may take the outputs from the f32 reference run, relative to the
    /// largest expected magnitude: f16 keeps 11 bits, about 5e-4 per rounding, and errors
    /// gather over the UNet's dozens of layers.
    const HALF_REL: f32 = 2e-2;

    #[test]
    fn half_precision_tracks_the_reference_run_on_flex() {
        half_precision_tracks_the_reference_run(Device::flex(), 21);
    }

    #[test]
    fn half_precision_tracks_the_reference_run_on_wgpu() {
        // Three frames: llvmpipe decodes slowly.
        if let Some(device) = wgpu() {
            half_precision_tracks_the_reference_run(device, 3);
        }
    }

    /// The tiny model held in f16 (as on a GPU by default): the CLIP token, the VAE latent, one
    /// UNet call and the decoded frames stay within [`HALF_REL`] of the reference run.
    fn half_precision_tracks_the_reference_run(device: Device, frames: usize) {
        let Some(fx) = fixture(&device) else {
            return;
        };
        let path = fixture::folder().unwrap().join("sv3d_tiny.safetensors");
        let weights = Weights::open(&path, &device)
            .unwrap()
            .with_dtype(FloatDType::F16);
        let model = Sv3d::from_weights(&weights, fx.config.clone(), Variant::P).unwrap();
        let image: Tensor<4> = fx.io("image");
        let token = model.clip().forward(image.clone());
        assert_close(
            "clip_embedding in f16",
            token,
            fx.io("clip_embedding"),
            HALF_REL,
        );
        let noise: Tensor<4> = fx.io("cond_noise");
        let latent = model.encoder().forward(image + noise * 1e-5);
        assert_close(
            "vae_concat_latent in f16",
            latent,
            fx.io("vae_concat_latent"),
            HALF_REL,
        );

        let clip: Tensor<3> = fx.io("clip_embedding");
        let [_, k, d] = clip.dims();
        let timesteps: Tensor<1> = fx.io("unet_timesteps");
        let out = model.unet().forward(UnetInputs {
            x: fx.io("unet_x"),
            timesteps: timesteps.into_data().try_to_vec().unwrap(),
            context: clip.expand([21, k, d]),
            y: fx.io("vector_y"),
            frames: 21,
        });
        assert_eq!(
            out.dtype(),
            burn::tensor::DType::F32,
            "outputs come back in f32"
        );
        assert_close("unet_out in f16", out, fx.io("unet_out"), HALF_REL);

        let sampled = fx.io::<4>("sampled_latent").narrow(0, 0, frames);
        let decoded = model.decoder.forward(sampled / fx.config.scale_factor);
        let expected = fx.io::<4>("decoded_frames").narrow(0, 0, frames);
        assert_close("decoded_frames in f16", decoded, expected, HALF_REL);
    }
}
