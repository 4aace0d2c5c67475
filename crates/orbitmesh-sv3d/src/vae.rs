//! SV3D's VAE: the encoder that turns the conditioning image into the latent concatenated to every
//! frame's UNet input, and the per-frame 2D decoder that turns sampled latents into images (sgm's
//! `Encoder`/`Decoder`, at any size from [`VaeConfig`], loaded by the checkpoint's names).
//!
//! The two halves come from different parts of the checkpoint. The encoder is the conditioner's
//! `AutoencoderKLModeOnly` ([`prefix::ENCODER`](super::prefix::ENCODER)), whose Gaussian posterior is
//! never sampled: its mode (the mean) is the latent. That module also carries a decoder and a
//! `post_quant_conv` that conditioning never runs; see [`VaeEncoder::scopes`]. The decoder is the
//! first stage's `Decoder` ([`prefix::DECODER`](super::prefix::DECODER)); SV3D's first stage is an
//! `AutoencodingEngine` with no `post_quant_conv`, so latents go straight into it.

use std::ops::Range;

use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions, PadMode};
use burn::tensor::{DType, FloatDType, Tensor};
use orbitmesh_nn::layers::{Conv2d, GroupNorm, TensorPlan, multi_head_attention, plan_attention};
use orbitmesh_nn::weights::Params;

use super::{VaeConfig, prefix};

/// sgm's `Normalize`: 32 groups with a smaller ε than PyTorch's default.
const GROUPS: usize = 32;
const NORM_EPS: f64 = 1e-6;

fn normalize(p: &Params, channels: usize) -> GroupNorm {
    GroupNorm::load(p, GROUPS, channels, NORM_EPS)
}

/// `ResnetBlock` without a timestep embedding (the VAE passes none); dropout is off at inference.
struct ResnetBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    norm2: GroupNorm,
    conv2: Conv2d,
    /// The 1×1 `nin_shortcut`, present only where the block changes the channel count.
    shortcut: Option<Conv2d>,
}

impl ResnetBlock {
    fn load(p: &Params, c_in: usize, c_out: usize) -> Self {
        Self {
            norm1: normalize(&p.at("norm1"), c_in),
            conv1: Conv2d::load(&p.at("conv1"), c_in, c_out, 3, 1, 1),
            norm2: normalize(&p.at("norm2"), c_out),
            conv2: Conv2d::load(&p.at("conv2"), c_out, c_out, 3, 1, 1),
            shortcut: (c_in != c_out)
                .then(|| Conv2d::load(&p.at("nin_shortcut"), c_in, c_out, 1, 1, 0)),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let h = self.conv1.forward(self.norm1.forward_silu(x.clone()));
        let h = self.conv2.forward(self.norm2.forward_silu(h));
        let skip = match &self.shortcut {
            Some(conv) => conv.forward(x),
            None => x,
        };
        skip + h
    }

    fn plan(&self, plan: &mut TensorPlan, x: [usize; 4]) -> [usize; 4] {
        let h = self.norm1.plan(plan, x);
        let h = self.conv1.plan(plan, h);
        let h = self.norm2.plan(plan, h);
        let h = self.conv2.plan(plan, h);
        if let Some(conv) = &self.shortcut {
            conv.plan(plan, x);
        }
        plan.tensor("resnet block", &h)
    }
}

/// `AttnBlock`: one head of self-attention over all `h·w` positions, its projections 1×1 convs.
struct AttnBlock {
    norm: GroupNorm,
    q: Conv2d,
    k: Conv2d,
    v: Conv2d,
    proj_out: Conv2d,
}

impl AttnBlock {
    fn load(p: &Params, channels: usize) -> Self {
        let conv = |name: &str| Conv2d::load(&p.at(name), channels, channels, 1, 1, 0);
        Self {
            norm: normalize(&p.at("norm"), channels),
            q: conv("q"),
            k: conv("k"),
            v: conv("v"),
            proj_out: conv("proj_out"),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let normed = self.norm.forward(x.clone());
        let tokens = |t: Tensor<4>| t.reshape([b, c, h * w]).swap_dims(1, 2);
        // One head of width c: the default 1/√head_dim scale is the reference's 1/√c.
        let attended = multi_head_attention(
            tokens(self.q.forward(normed.clone())),
            tokens(self.k.forward(normed.clone())),
            tokens(self.v.forward(normed)),
            1,
        );
        x + self
            .proj_out
            .forward(attended.swap_dims(1, 2).reshape([b, c, h, w]))
    }

    fn plan(&self, plan: &mut TensorPlan, x: [usize; 4]) -> [usize; 4] {
        let [b, c, h, w] = x;
        self.norm.plan(plan, x);
        let tokens = [b, h * w, c];
        for conv in [&self.q, &self.k, &self.v] {
            conv.plan(plan, x);
            plan.tensor("attention tokens", &tokens);
        }
        plan_attention(plan, tokens, tokens, 1);
        self.proj_out.plan(plan, x);
        plan.tensor("attention block", &x)
    }
}

/// A ResnetBlock, followed by an AttnBlock at the resolutions listed in `attn_resolutions`.
struct Stage {
    block: ResnetBlock,
    attn: Option<AttnBlock>,
}

/// One resolution of the encoder's `down` or the decoder's `up` list.
struct Level {
    stages: Vec<Stage>,
    /// The level's `downsample.conv` or `upsample.conv`, absent at the last level of the pass.
    resample: Option<Conv2d>,
}

/// A level's `blocks` ResnetBlocks from `c_in` to `c_out` channels at side length `res`.
fn load_stages(
    p: &Params,
    cfg: &VaeConfig,
    c_in: usize,
    c_out: usize,
    blocks: usize,
    res: usize,
) -> Vec<Stage> {
    let with_attn = cfg.attn_resolutions.contains(&res);
    (0..blocks)
        .map(|i| Stage {
            block: ResnetBlock::load(
                &p.at("block").at(i),
                if i == 0 { c_in } else { c_out },
                c_out,
            ),
            attn: with_attn.then(|| AttnBlock::load(&p.at("attn").at(i), c_out)),
        })
        .collect()
}

impl Level {
    fn blocks(&self, mut x: Tensor<4>) -> Tensor<4> {
        for stage in &self.stages {
            x = stage.block.forward(x);
            if let Some(attn) = &stage.attn {
                x = attn.forward(x);
            }
        }
        x
    }

    fn plan_blocks(&self, plan: &mut TensorPlan, mut x: [usize; 4]) -> [usize; 4] {
        for stage in &self.stages {
            x = stage.block.plan(plan, x);
            if let Some(attn) = &stage.attn {
                x = attn.plan(plan, x);
            }
        }
        x
    }
}

/// The `mid` of both halves: ResnetBlock, AttnBlock (whatever `attn_resolutions` says), ResnetBlock.
struct Mid {
    block_1: ResnetBlock,
    attn_1: AttnBlock,
    block_2: ResnetBlock,
}

impl Mid {
    fn load(p: &Params, channels: usize) -> Self {
        Self {
            block_1: ResnetBlock::load(&p.at("block_1"), channels, channels),
            attn_1: AttnBlock::load(&p.at("attn_1"), channels),
            block_2: ResnetBlock::load(&p.at("block_2"), channels, channels),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.block_2
            .forward(self.attn_1.forward(self.block_1.forward(x)))
    }

    fn plan(&self, plan: &mut TensorPlan, x: [usize; 4]) -> [usize; 4] {
        let h = self.block_1.plan(plan, x);
        let h = self.attn_1.plan(plan, h);
        self.block_2.plan(plan, h)
    }
}

/// The conditioner's `AutoencoderKLModeOnly.encode`: `Encoder`, `quant_conv`, posterior mode.
pub struct VaeEncoder {
    /// The weights' float type; the image is cast to it, the latent back to f32.
    dtype: FloatDType,
    conv_in: Conv2d,
    down: Vec<Level>,
    mid: Mid,
    norm_out: GroupNorm,
    conv_out: Conv2d,
    quant_conv: Conv2d,
}

impl VaeEncoder {
    /// `p`: the `AutoencoderKLModeOnly` ([`prefix::ENCODER`]).
    pub fn load(p: &Params, cfg: &VaeConfig) -> Self {
        let e = p.at("encoder");
        let mut c = cfg.ch;
        let mut res = cfg.resolution;
        let last = cfg.ch_mult.len() - 1;
        let down = cfg
            .ch_mult
            .iter()
            .enumerate()
            .map(|(i, &mult)| {
                let level = e.at("down").at(i);
                let c_out = cfg.ch * mult;
                let stages = load_stages(&level, cfg, c, c_out, cfg.num_res_blocks, res);
                c = c_out;
                let resample = (i != last).then(|| {
                    res /= 2;
                    // Padding is added by hand on the right and bottom only (see `forward`).
                    Conv2d::load(&level.at("downsample.conv"), c, c, 3, 2, 0)
                });
                Level { stages, resample }
            })
            .collect();
        let moments = if cfg.double_z {
            2 * cfg.z_channels
        } else {
            cfg.z_channels
        };
        Self {
            dtype: p.dtype(),
            conv_in: Conv2d::load(&e.at("conv_in"), cfg.in_channels, cfg.ch, 3, 1, 1),
            down,
            mid: Mid::load(&e.at("mid"), c),
            norm_out: normalize(&e.at("norm_out"), c),
            conv_out: Conv2d::load(&e.at("conv_out"), c, moments, 3, 1, 1),
            // SV3D's `embed_dim` equals `z_channels`, so quant_conv keeps the channel count.
            quant_conv: Conv2d::load(&p.at("quant_conv"), moments, moments, 1, 1, 0),
        }
    }

    /// The checkpoint scopes [`VaeEncoder::load`] reads, for [`Weights::finish`](super::Weights::finish):
    /// the whole [`prefix::ENCODER`] would also flag its unused decoder and `post_quant_conv`.
    pub fn scopes() -> [String; 2] {
        [
            format!("{}.encoder.", prefix::ENCODER),
            format!("{}.quant_conv.", prefix::ENCODER),
        ]
    }

    /// Image `[B, 3, H, W]` in [-1, 1] → latent mode `[B, z, H/f, W/f]`, not multiplied by the
    /// scale factor (SV3D's conditioner concatenates it unscaled).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut h = self.conv_in.forward(x.cast(self.dtype));
        for level in &self.down {
            h = level.blocks(h);
            if let Some(conv) = &level.resample {
                // torch convs pad symmetrically, so the reference pads one zero row and column on
                // the far side itself to halve even sizes exactly.
                h = conv.forward(h.pad((0, 1, 0, 1), PadMode::Constant(0.0)));
            }
        }
        let h = self.mid.forward(h);
        let moments = self
            .quant_conv
            .forward(self.conv_out.forward(self.norm_out.forward_silu(h)));
        // The diagonal Gaussian's parameters are [mean ‖ log-variance]; the mode is the mean.
        let half = moments.dims()[1] / 2;
        moments.narrow(1, 0, half).cast(FloatDType::F32)
    }

    /// The tensors of one [`VaeEncoder::forward`] on `x` [B, 3, H, W], planned from shapes
    /// alone; returns the latent's shape. (Its backward, in the guidance, allocates gradients
    /// of the same shapes as these.)
    pub fn plan(&self, plan: &mut TensorPlan, x: [usize; 4]) -> [usize; 4] {
        let mut h = self.conv_in.plan(plan, x);
        for level in &self.down {
            h = level.plan_blocks(plan, h);
            if let Some(conv) = &level.resample {
                let [b, c, hh, ww] = h;
                let padded = plan.tensor("padded", &[b, c, hh + 1, ww + 1]);
                h = conv.plan(plan, padded);
            }
        }
        let h = self.mid.plan(plan, h);
        let h = self.norm_out.plan(plan, h);
        let h = self.conv_out.plan(plan, h);
        let [b, moments, lh, lw] = self.quant_conv.plan(plan, h);
        plan.tensor_f32("latent", &[b, moments / 2, lh, lw])
    }
}

/// The first stage's per-frame 2D `Decoder`.
pub struct VaeDecoder {
    /// The weights' float type; the latent is cast to it, the image back to f32.
    dtype: FloatDType,
    conv_in: Conv2d,
    mid: Mid,
    /// From the lowest resolution up: the checkpoint's `up.{n-1}` first, `up.0` last.
    up: Vec<Level>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl VaeDecoder {
    /// `p`: the decoder itself ([`prefix::DECODER`]).
    pub fn load(p: &Params, cfg: &VaeConfig) -> Self {
        let levels = cfg.ch_mult.len();
        let mut c = cfg.ch * cfg.ch_mult[levels - 1];
        let mut res = cfg.resolution >> (levels - 1);
        let conv_in = Conv2d::load(&p.at("conv_in"), cfg.z_channels, c, 3, 1, 1);
        let mid = Mid::load(&p.at("mid"), c);
        let up = (0..levels)
            .rev()
            .map(|i| {
                let level = p.at("up").at(i);
                let c_out = cfg.ch * cfg.ch_mult[i];
                let stages = load_stages(&level, cfg, c, c_out, cfg.num_res_blocks + 1, res);
                c = c_out;
                let resample = (i != 0).then(|| {
                    res *= 2;
                    Conv2d::load(&level.at("upsample.conv"), c, c, 3, 1, 1)
                });
                Level { stages, resample }
            })
            .collect();
        Self {
            dtype: p.dtype(),
            conv_in,
            mid,
            up,
            norm_out: normalize(&p.at("norm_out"), c),
            conv_out: Conv2d::load(&p.at("conv_out"), c, cfg.out_ch, 3, 1, 1),
        }
    }

    /// Latent `[B, z, h, w]`, already divided by the scale factor → image `[B, 3, f·h, f·w]` in
    /// about [-1, 1].
    pub fn forward(&self, z: Tensor<4>) -> Tensor<4> {
        let mut h = self.mid.forward(self.conv_in.forward(z.cast(self.dtype)));
        for level in &self.up {
            h = level.blocks(h);
            if let Some(conv) = &level.resample {
                let doubled =
                    InterpolateOptions::new(InterpolateMode::Nearest).with_scale_factor([2.0, 2.0]);
                h = conv.forward(interpolate(h, doubled));
            }
        }
        self.conv_out
            .forward(self.norm_out.forward_silu(h))
            .cast(FloatDType::F32)
    }

    /// The tensors of one [`VaeDecoder::forward`] on `z` [B, z, h, w], planned from shapes
    /// alone; returns the image's shape.
    pub fn plan(&self, plan: &mut TensorPlan, z: [usize; 4]) -> [usize; 4] {
        let h = self.conv_in.plan(plan, z);
        let mut h = self.mid.plan(plan, h);
        for level in &self.up {
            h = level.plan_blocks(plan, h);
            if let Some(conv) = &level.resample {
                let [b, c, hh, ww] = h;
                let doubled = plan.tensor("upsampled", &[b, c, 2 * hh, 2 * ww]);
                h = conv.plan(plan, doubled);
            }
        }
        let h = self.norm_out.plan(plan, h);
        let rgb = self.conv_out.plan(plan, h);
        plan.tensor_f32("image", &rgb)
    }

    /// How many frames of `latent` [1, z, h, w] to decode at once, at most `requested`: the
    /// most whose largest planned tensor fits `limit` bytes (at 576² a frame's f32
    /// normalisation input at full resolution is 340 MB, so 7 frames would not fit the GPU
    /// path's largest binding, [`orbitmesh_nn::layers::MAX_BINDING_BYTES`]).
    pub fn frames_per_chunk(&self, requested: usize, latent: [usize; 3], limit: usize) -> usize {
        let [z, h, w] = latent;
        let fits = |frames: usize| {
            let mut plan = TensorPlan::new(DType::from(self.dtype).size());
            self.plan(&mut plan, [frames, z, h, w]);
            plan.largest().0 <= limit
        };
        (1..=requested.max(1)).rev().find(|&k| fits(k)).unwrap_or(1)
    }

    /// [`VaeDecoder::forward`] over at most `chunk` frames at a time: the full-resolution
    /// activations of all 21 frames at once would take several GB. `on_chunk` sees each chunk's
    /// frames (their range) as they are decoded, and may stop the decoding with an error.
    pub fn decode_chunked<E>(
        &self,
        z: Tensor<4>,
        chunk: usize,
        mut on_chunk: impl FnMut(Range<usize>, &Tensor<4>) -> Result<(), E>,
    ) -> Result<Tensor<4>, E> {
        let chunk = chunk.max(1);
        let mut decoded = Vec::new();
        for (i, part) in z.split(chunk, 0).into_iter().enumerate() {
            let rgb = self.forward(part);
            on_chunk(i * chunk..i * chunk + rgb.dims()[0], &rgb)?;
            decoded.push(rgb);
        }
        Ok(Tensor::cat(decoded, 0))
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;
    use orbitmesh_nn::parity::{FLEX_REL, WGPU_REL, assert_close, wgpu};
    use orbitmesh_nn::weights::WeightsError;

    use super::*;
    use crate::fixture::fixture;

    #[test]
    fn encoder_and_decoder_match_the_reference_run_on_flex() {
        encoder_and_decoder_match_the_reference_run(Device::flex(), FLEX_REL, 21, 8);
    }

    #[test]
    fn encoder_and_decoder_match_the_reference_run_on_wgpu() {
        // All 21 frames, in chunks of four so the last is short (6 s through llvmpipe here).
        if let Some(device) = wgpu() {
            encoder_and_decoder_match_the_reference_run(device, WGPU_REL, 21, 4);
        }
    }

    /// Decodes the first `frames` recorded latents in chunks of `chunk` (which should not divide
    /// `frames`, so a short last chunk is exercised).
    fn encoder_and_decoder_match_the_reference_run(
        device: Device,
        rel: f32,
        frames: usize,
        chunk: usize,
    ) {
        let Some(fx) = fixture(&device) else {
            return;
        };
        let root = fx.weights.root();
        let encoder = VaeEncoder::load(&root.at(prefix::ENCODER), &fx.config.vae);
        let decoder = VaeDecoder::load(&root.at(prefix::DECODER), &fx.config.vae);

        let [encoder_scope, quant_scope] = VaeEncoder::scopes();
        fx.weights
            .finish(&[&encoder_scope, &quant_scope, prefix::DECODER])
            .unwrap();
        // The wider scope leaves exactly the conditioner's never-run decoder half unread.
        let Err(WeightsError::Tensors { problems, .. }) =
            fx.weights.finish(&[prefix::ENCODER, prefix::DECODER])
        else {
            panic!("the conditioner's AutoencoderKLModeOnly should hold an unused decoder");
        };
        let unused = [
            format!("{}.decoder.", prefix::ENCODER),
            format!("{}.post_quant_conv.", prefix::ENCODER),
        ];
        for problem in &problems {
            assert!(
                problem.ends_with(": unexpected") && unused.iter().any(|u| problem.starts_with(u)),
                "{problem}"
            );
        }

        let image: Tensor<4> = fx.io("image");
        let noise: Tensor<4> = fx.io("cond_noise");
        let latent = encoder.forward(image + noise * 1e-5);
        assert_close("vae_concat_latent", latent, fx.io("vae_concat_latent"), rel);

        let sampled: Tensor<4> = fx.io::<4>("sampled_latent").narrow(0, 0, frames);
        let expected: Tensor<4> = fx.io::<4>("decoded_frames").narrow(0, 0, frames);
        let mut ranges = Vec::new();
        let decoded = decoder
            .decode_chunked(sampled / fx.config.scale_factor, chunk, |range, _| {
                ranges.push(range);
                Ok::<(), std::convert::Infallible>(())
            })
            .unwrap();
        let expected_ranges: Vec<_> = (0..frames)
            .step_by(chunk)
            .map(|first| first..(first + chunk).min(frames))
            .collect();
        assert_eq!(
            ranges, expected_ranges,
            "one call per chunk, the last short"
        );
        assert_close("decoded_frames", decoded, expected, rel);
    }
}
