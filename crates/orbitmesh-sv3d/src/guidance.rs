//! SV3D as score-distillation guidance for the fine stage: renders of the mesh along the orbit
//! in, a gradient on those renders out, pulling them towards what SV3D would denoise them into
//! (DreamFusion's SDS, through the VAE encoder and one guided denoiser call at a sampled σ).
//! The binary hands it to the fine stage as that stage's `Guidance`.
//!
//! The model is loaded on a plain device, without autodiff: the UNet's 2.3 G parameters are never
//! part of a graph (SDS needs no gradient through the denoiser). Only the VAE encoder's
//! vector-Jacobian product is taken by backpropagation, from the frames lifted into autodiff
//! (the weights stay constants), a few frames at a time: the encoder runs on each frame alone,
//! so the product splits exactly by frames, and one 576² frame's graph is about 2 GB in f32.

use std::cell::RefCell;

use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::model::{Sv3d, standard_normal};
use super::sampler::{Conditioning, denoise, triangle_scales};

/// Frames per backward pass of the encoder by default: one 576² frame's graph is about 2 GB in
/// f32 (with two, a full-size guided refine on the CPU peaked at 20.1 GiB), and its largest
/// tensor fits the GPU path's binding ([`Sv3d::plan_guidance_step`]).
pub const FRAMES_PER_BACKWARD: usize = 1;

/// SDS with SV3D, conditioned on the input image.
pub struct Sv3dGuidance {
    model: Sv3d,
    /// The CLIP token and VAE latent of the input image, computed once.
    token: Tensor<3>,
    latent: Tensor<4>,
    /// σ is drawn log-uniformly from this range at each call.
    pub sigma_range: (f64, f64),
    pub max_guidance: f64,
    /// Frames per backward pass of the encoder (each frame's graph is held until its pass ends).
    pub frames_per_backward: usize,
    rng: RefCell<ChaCha8Rng>,
}

impl Sv3dGuidance {
    /// `image`: [1, 3, H, W] in [−1, 1] on white, on the model's device.
    pub fn new(model: Sv3d, image: Tensor<4>, seed: u64) -> Self {
        let token = model.clip().forward(image.clone()).detach();
        let latent = model.encoder().forward(image).detach();
        Self {
            model,
            token,
            latent,
            sigma_range: (0.02, 20.0),
            max_guidance: 2.5,
            frames_per_backward: FRAMES_PER_BACKWARD,
            rng: RefCell::new(ChaCha8Rng::seed_from_u64(seed)),
        }
    }

    /// The SDS gradient on the frames' scaled latents `z`: w·(z − D(z + σε; σ)), with the
    /// triangle-guided denoiser, w = 1 / (number of latent values).
    pub fn latent_gradient(&self, z: Tensor<4>, cameras: &[(f32, f32)]) -> Tensor<4> {
        let [frames, channels, h, w] = z.dims();
        let device = z.device();
        let mut rng = self.rng.borrow_mut();
        let (lo, hi) = (self.sigma_range.0.ln(), self.sigma_range.1.ln());
        let sigma = (lo + (hi - lo) * rng.random::<f64>()).exp();
        let noise: Vec<f32> = (0..frames * channels * h * w)
            .map(|_| standard_normal(&mut *rng))
            .collect();
        let noise =
            Tensor::<4>::from_data(TensorData::new(noise, [frames, channels, h, w]), &device);
        let (polars, azimuths): (Vec<f32>, Vec<f32>) = cameras.iter().copied().unzip();
        let [_, k, d] = self.token.dims();
        let [_, lz, lh, lw] = self.latent.dims();
        let cond = Conditioning {
            context: self.token.clone().expand([frames, k, d]),
            concat: self.latent.clone().expand([frames, lz, lh, lw]),
            vector: self.model.vector(&polars, &azimuths),
        };
        let noisy = z.clone() + noise * sigma;
        let u = denoise(self.model.unet(), &noisy, sigma, &cond.unconditional());
        let c = denoise(self.model.unet(), &noisy, sigma, &cond);
        let scale: Vec<f32> = triangle_scales(frames, 1.0, self.max_guidance)
            .into_iter()
            .map(|s| s as f32)
            .collect();
        let scale = Tensor::<1>::from_data(TensorData::new(scale, [frames]), &device)
            .reshape([frames, 1, 1, 1]);
        let denoised = u.clone() + (c - u) * scale;
        (z - denoised) / (frames * channels * h * w) as f64
    }

    /// Carries a gradient on the scaled latents back to the frames in [0, 1] (the encoder's
    /// vector-Jacobian product), [`Sv3dGuidance::frames_per_backward`] frames at a time.
    pub fn image_gradient(&self, frames: Tensor<4>, latent_grad: Tensor<4>) -> Tensor<4> {
        let chunk = self.frames_per_backward.max(1);
        let parts = frames
            .split(chunk, 0)
            .into_iter()
            .zip(latent_grad.split(chunk, 0))
            .map(|(x, g)| {
                let x = x.detach().inner().autodiff().require_grad();
                let z = self.model.encoder().forward(x.clone() * 2.0 - 1.0)
                    * self.model.config.scale_factor;
                let grads = (z * g.detach().inner().autodiff()).sum().backward();
                x.grad(&grads).expect("the frames require a gradient")
            })
            .collect();
        Tensor::cat(parts, 0)
    }

    pub fn device(&self) -> Device {
        self.token.device()
    }

    /// The gradient of the SDS loss on rendered frames. `frames`: [frames, 3, h, w] in [0, 1],
    /// rendered from `cameras` ((polar, azimuth) in radians, SV3D's order: the input view last at
    /// azimuth 0). Returns d(loss)/d(frames), same shape.
    ///
    /// The frames may live on another device than the model (the fine stage's tensors on the
    /// CPU, SV3D on a GPU): they are moved to the model, and the gradient back.
    pub fn gradient(&self, frames: Tensor<4>, cameras: &[(f32, f32)]) -> Tensor<4> {
        let device = frames.device();
        let frames = Tensor::<4>::from_data(frames.into_data(), &self.device());
        // The latents by the same chunks as the backward, so no pass holds all 21 frames' full-
        // resolution activations (3.6 GB in f32 at 576²).
        let latents = frames
            .clone()
            .split(self.frames_per_backward.max(1), 0)
            .into_iter()
            .map(|x| self.model.encoder().forward(x * 2.0 - 1.0))
            .collect();
        let z = Tensor::cat(latents, 0) * self.model.config.scale_factor;
        let latent_grad = self.latent_gradient(z, cameras);
        let gradient = self.image_gradient(frames, latent_grad);
        Tensor::from_data(gradient.into_data(), &device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Variant;
    use crate::fixture::fixture;

    fn dot(a: Tensor<4>, b: Tensor<4>) -> f64 {
        f64::from((a * b).sum().into_scalar::<f32>())
    }

    #[test]
    fn sds_reaches_the_frames_and_its_encoder_step_matches_finite_differences() {
        let device = Device::flex();
        let Some(fx) = fixture(&device) else {
            return;
        };
        let model = Sv3d::from_weights(&fx.weights, fx.config.clone(), Variant::P).unwrap();
        let image: Tensor<4> = fx.io("image");
        let mut guidance = Sv3dGuidance::new(model, image, 7);
        let cameras: Vec<(f32, f32)> = (0..21)
            .map(|k| {
                (
                    80f32.to_radians(),
                    (360.0 * ((k + 1) % 21) as f32 / 21.0).to_radians(),
                )
            })
            .collect();
        let frames: Tensor<4> = fx.io("decoded_frames_01");
        let grad = guidance.gradient(frames.clone(), &cameras);
        assert_eq!(grad.dims(), frames.dims());
        assert!(grad.device() == device && !grad.is_autodiff());
        let norm = dot(grad.clone(), grad.clone()).sqrt();
        assert!(norm.is_finite() && norm > 0.0, "{norm}");

        // The encoder's backward by frames: one at a time, in uneven chunks and all at once
        // give the same gradient (the encoder runs on each frame alone).
        let z = guidance.model.encoder().forward(frames.clone() * 2.0 - 1.0);
        let latent_grad =
            guidance.latent_gradient(z * guidance.model.config.scale_factor, &cameras);
        let by_chunks = |chunk: usize, guidance: &mut Sv3dGuidance| {
            guidance.frames_per_backward = chunk;
            guidance.image_gradient(frames.clone(), latent_grad.clone())
        };
        let whole = by_chunks(21, &mut guidance);
        for chunk in [1, 4] {
            let chunked = by_chunks(chunk, &mut guidance);
            let diff = f64::from((chunked - whole.clone()).abs().max().into_scalar::<f32>());
            let scale = f64::from(whole.clone().abs().max().into_scalar::<f32>());
            assert!(
                diff <= 1e-6 * scale.max(1e-30),
                "chunks of {chunk}: {diff} of {scale}"
            );
        }

        // The encoder's VJP against central differences along a random direction, on two frames.
        let two = frames.clone().slice([0..2, 0..3, 0..64, 0..64]);
        let z = guidance
            .model
            .encoder()
            .forward(two.clone() * 2.0 - 1.0)
            .detach();
        // Seeded, so the check is the same on every run.
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut normal = |dims: [usize; 4]| {
            let values: Vec<f32> = (0..dims.iter().product::<usize>())
                .map(|_| standard_normal(&mut rng))
                .collect();
            Tensor::<4>::from_data(TensorData::new(values, dims), &guidance.device())
        };
        let target = normal(z.dims());
        let v = normal(two.dims());
        let analytic = dot(
            guidance.image_gradient(two.clone(), target.clone()),
            v.clone(),
        );
        let loss = |x: Tensor<4>| {
            let z = guidance.model.encoder().forward(x * 2.0 - 1.0)
                * guidance.model.config.scale_factor;
            dot(z.detach(), target.clone())
        };
        let h = 3e-3;
        let numeric = (loss(two.clone() + v.clone() * h) - loss(two - v * h)) / (2.0 * h);
        assert!(
            (analytic - numeric).abs() <= 0.03 * numeric.abs().max(1e-3),
            "VJP {analytic} vs finite differences {numeric}"
        );
    }
}
