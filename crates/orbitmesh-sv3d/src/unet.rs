//! SV3D's denoising network: sgm's `VideoUNet` (the SVD-xt UNet with spatial layers interleaved
//! with temporal ones), at any size from [`UnetConfig`], loaded by the checkpoint's names.
//!
//! Frames travel as a batch `[batch·frames, channels, h, w]`; the temporal layers regroup them to
//! mix information across the orbit. SV3D never runs the image-only mode (its
//! `image_only_indicator` is always 0), so every temporal mix uses its learned `sigmoid(mix_factor)`.

use burn::tensor::activation::{sigmoid, silu};
use burn::tensor::{Device, FloatDType, Tensor, TensorData};
use orbitmesh_nn::layers::{
    Conv2d, GroupNorm, LayerNorm, Linear, TemporalConv, TensorPlan, geglu, multi_head_attention,
    plan_attention,
};
use orbitmesh_nn::weights::Params;

use super::UnetConfig;

/// The UNet's GroupNorms (`normalization`: 32 groups, PyTorch's default ε).
const RES_NORM_EPS: f64 = 1e-5;
/// The transformers' input GroupNorm (`Normalize`) uses a smaller ε.
const TRANSFORMER_NORM_EPS: f64 = 1e-6;
const LAYER_NORM_EPS: f64 = 1e-5;
const GROUPS: usize = 32;

/// Sinusoidal embedding of (possibly fractional) `t`, cosines first, as sgm's
/// `timestep_embedding`.
pub fn timestep_embedding(t: &[f32], dim: usize, max_period: f64) -> Vec<f32> {
    let half = dim / 2;
    let mut out = Vec::with_capacity(t.len() * dim);
    for &t in t {
        let args: Vec<f32> = (0..half)
            .map(|i| {
                let freq = (-(max_period.ln()) * i as f64 / half as f64).exp() as f32;
                t * freq
            })
            .collect();
        out.extend(args.iter().map(|a| a.cos()));
        out.extend(args.iter().map(|a| a.sin()));
        out.extend(std::iter::repeat_n(0.0, dim - 2 * half));
    }
    out
}

fn embedding_tensor(t: &[f32], dim: usize, max_period: f64, device: &Device) -> Tensor<2> {
    Tensor::from_data(
        TensorData::new(timestep_embedding(t, dim, max_period), [t.len(), dim]),
        device,
    )
}

/// `Linear → SiLU → Linear`, as the time, label and frame-position embeddings use.
struct Mlp {
    first: Linear,
    second: Linear,
}

impl Mlp {
    fn load(p: &Params, d_in: usize, hidden: usize, d_out: usize) -> Self {
        Self {
            first: Linear::load(&p.at(0), d_in, hidden, true),
            second: Linear::load(&p.at(2), hidden, d_out, true),
        }
    }

    fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        self.second.forward(silu(self.first.forward(x)))
    }

    fn plan<const D: usize>(&self, plan: &mut TensorPlan, x: [usize; D]) -> [usize; D] {
        let hidden = self.first.plan(plan, x);
        self.second.plan(plan, hidden)
    }
}

/// sgm's `AlphaBlender` with the learned mix: `α·spatial + (1−α)·temporal`, α = sigmoid(mix).
struct TimeMixer {
    mix_factor: Tensor<1>,
}

impl TimeMixer {
    fn load(p: &Params) -> Self {
        Self {
            mix_factor: p.tensor("mix_factor", [1]),
        }
    }

    fn forward<const D: usize>(&self, spatial: Tensor<D>, temporal: Tensor<D>) -> Tensor<D> {
        let alpha = sigmoid(self.mix_factor.clone()).reshape([1; D]);
        spatial * alpha.clone() + temporal * (alpha.neg() + 1.0)
    }

    fn plan<const D: usize>(&self, plan: &mut TensorPlan, x: [usize; D]) -> [usize; D] {
        plan.tensor("time mix", &x)
    }
}

/// The time-stack half of a `VideoResBlock`: a ResBlock whose convolutions run over time only.
struct TemporalResBlock {
    in_norm: GroupNorm,
    in_conv: TemporalConv,
    emb: Linear,
    out_norm: GroupNorm,
    out_conv: TemporalConv,
}

impl TemporalResBlock {
    fn load(p: &Params, channels: usize, emb: usize, kernel: usize) -> Self {
        Self {
            in_norm: GroupNorm::load(&p.at("in_layers.0"), GROUPS, channels, RES_NORM_EPS),
            in_conv: TemporalConv::load(&p.at("in_layers.2"), channels, channels, kernel),
            emb: Linear::load(&p.at("emb_layers.1"), emb, channels, true),
            out_norm: GroupNorm::load(&p.at("out_layers.0"), GROUPS, channels, RES_NORM_EPS),
            out_conv: TemporalConv::load(&p.at("out_layers.3"), channels, channels, kernel),
        }
    }

    /// `x`: [batch, channels, frames, h, w]; `emb`: [batch·frames, emb].
    fn forward(&self, x: Tensor<5>, emb: Tensor<2>) -> Tensor<5> {
        let [b, c, t, _, _] = x.dims();
        let h = self.in_conv.forward(self.in_norm.forward_silu(x.clone()));
        let e = self
            .emb
            .forward(silu(emb))
            .reshape([b, t, c])
            .swap_dims(1, 2)
            .reshape([b, c, t, 1, 1]);
        let h = self.out_conv.forward(self.out_norm.forward_silu(h + e));
        x + h
    }

    fn plan(&self, plan: &mut TensorPlan, x: [usize; 5]) -> [usize; 5] {
        let h = self.in_norm.plan(plan, x);
        let h = self.in_conv.plan(plan, h);
        let h = self.out_norm.plan(plan, h);
        self.out_conv.plan(plan, h)
    }
}

/// sgm's `VideoResBlock`: a 2D ResBlock on every frame, then its temporal twin, blended.
struct VideoResBlock {
    in_norm: GroupNorm,
    in_conv: Conv2d,
    emb: Linear,
    out_norm: GroupNorm,
    out_conv: Conv2d,
    skip: Option<Conv2d>,
    time_stack: TemporalResBlock,
    time_mixer: TimeMixer,
}

impl VideoResBlock {
    fn load(p: &Params, c_in: usize, c_out: usize, emb: usize, cfg: &UnetConfig) -> Self {
        Self {
            in_norm: GroupNorm::load(&p.at("in_layers.0"), GROUPS, c_in, RES_NORM_EPS),
            in_conv: Conv2d::load(&p.at("in_layers.2"), c_in, c_out, 3, 1, 1),
            emb: Linear::load(&p.at("emb_layers.1"), emb, c_out, true),
            out_norm: GroupNorm::load(&p.at("out_layers.0"), GROUPS, c_out, RES_NORM_EPS),
            out_conv: Conv2d::load(&p.at("out_layers.3"), c_out, c_out, 3, 1, 1),
            skip: (c_in != c_out)
                .then(|| Conv2d::load(&p.at("skip_connection"), c_in, c_out, 1, 1, 0)),
            time_stack: TemporalResBlock::load(
                &p.at("time_stack"),
                c_out,
                emb,
                cfg.video_kernel_size[0],
            ),
            time_mixer: TimeMixer::load(&p.at("time_mixer")),
        }
    }

    fn forward(&self, x: Tensor<4>, emb: Tensor<2>, frames: usize) -> Tensor<4> {
        let h = self.in_conv.forward(self.in_norm.forward_silu(x.clone()));
        let [n, c, hh, ww] = h.dims();
        let e = self.emb.forward(silu(emb.clone())).reshape([n, c, 1, 1]);
        let h = self.out_conv.forward(self.out_norm.forward_silu(h + e));
        let x = match &self.skip {
            Some(skip) => skip.forward(x),
            None => x,
        } + h;
        let b = n / frames;
        let video = x.reshape([b, frames, c, hh, ww]).swap_dims(1, 2);
        let temporal = self.time_stack.forward(video.clone(), emb);
        self.time_mixer
            .forward(video, temporal)
            .swap_dims(1, 2)
            .reshape([n, c, hh, ww])
    }

    fn plan(&self, plan: &mut TensorPlan, x: [usize; 4], frames: usize) -> [usize; 4] {
        let h = self.in_norm.plan(plan, x);
        let h = self.in_conv.plan(plan, h);
        let h = self.out_norm.plan(plan, h);
        let h = self.out_conv.plan(plan, h);
        if let Some(skip) = &self.skip {
            skip.plan(plan, x);
        }
        let [n, c, hh, ww] = h;
        let temporal = self.time_stack.plan(plan, [n / frames, c, frames, hh, ww]);
        self.time_mixer.plan(plan, temporal);
        // The mix back in frame order (a copy).
        plan.tensor("video res block", &h)
    }
}

/// sgm's `CrossAttention` (self-attention when no context is given).
struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: usize,
}

impl Attention {
    fn load(p: &Params, dim: usize, context_dim: usize, heads: usize, head_dim: usize) -> Self {
        let inner = heads * head_dim;
        Self {
            to_q: Linear::load(&p.at("to_q"), dim, inner, false),
            to_k: Linear::load(&p.at("to_k"), context_dim, inner, false),
            to_v: Linear::load(&p.at("to_v"), context_dim, inner, false),
            to_out: Linear::load(&p.at("to_out.0"), inner, dim, true),
            heads,
        }
    }

    fn forward(&self, x: Tensor<3>, context: Option<Tensor<3>>) -> Tensor<3> {
        let context = context.unwrap_or_else(|| x.clone());
        let q = self.to_q.forward(x);
        let k = self.to_k.forward(context.clone());
        let v = self.to_v.forward(context);
        self.to_out
            .forward(multi_head_attention(q, k, v, self.heads))
    }

    fn plan(
        &self,
        plan: &mut TensorPlan,
        x: [usize; 3],
        context: Option<[usize; 3]>,
    ) -> [usize; 3] {
        let context = context.unwrap_or(x);
        let q = self.to_q.plan(plan, x);
        let k = self.to_k.plan(plan, context);
        self.to_v.plan(plan, context);
        let attended = plan_attention(plan, q, k, self.heads);
        self.to_out.plan(plan, attended)
    }
}

/// sgm's `FeedForward` with a GEGLU input projection (`gated_ff`), 4× wide.
struct FeedForward {
    proj: Linear,
    out: Linear,
}

impl FeedForward {
    fn load(p: &Params, dim: usize, dim_out: usize) -> Self {
        let inner = 4 * dim;
        Self {
            proj: Linear::load(&p.at("net.0.proj"), dim, 2 * inner, true),
            out: Linear::load(&p.at("net.2"), inner, dim_out, true),
        }
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.out.forward(geglu(self.proj.forward(x)))
    }

    fn plan(&self, plan: &mut TensorPlan, x: [usize; 3]) -> [usize; 3] {
        let [b, n, two_inner] = self.proj.plan(plan, x);
        let gated = plan.tensor("gated", &[b, n, two_inner / 2]);
        self.out.plan(plan, gated)
    }
}

/// sgm's `BasicTransformerBlock`: self-attention, cross-attention, feed-forward.
struct SpatialBlock {
    norm1: LayerNorm,
    attn1: Attention,
    norm2: LayerNorm,
    attn2: Attention,
    norm3: LayerNorm,
    ff: FeedForward,
}

impl SpatialBlock {
    fn load(p: &Params, dim: usize, context_dim: usize, heads: usize, head_dim: usize) -> Self {
        Self {
            norm1: LayerNorm::load(&p.at("norm1"), dim, LAYER_NORM_EPS),
            attn1: Attention::load(&p.at("attn1"), dim, dim, heads, head_dim),
            norm2: LayerNorm::load(&p.at("norm2"), dim, LAYER_NORM_EPS),
            attn2: Attention::load(&p.at("attn2"), dim, context_dim, heads, head_dim),
            norm3: LayerNorm::load(&p.at("norm3"), dim, LAYER_NORM_EPS),
            ff: FeedForward::load(&p.at("ff"), dim, dim),
        }
    }

    fn forward(&self, x: Tensor<3>, context: Tensor<3>) -> Tensor<3> {
        let x = self.attn1.forward(self.norm1.forward(x.clone()), None) + x;
        let x = self
            .attn2
            .forward(self.norm2.forward(x.clone()), Some(context))
            + x;
        self.ff.forward(self.norm3.forward(x.clone())) + x
    }

    fn plan(&self, plan: &mut TensorPlan, x: [usize; 3], context: [usize; 3]) -> [usize; 3] {
        let normed = self.norm1.plan(plan, x);
        self.attn1.plan(plan, normed, None);
        let normed = self.norm2.plan(plan, x);
        self.attn2.plan(plan, normed, Some(context));
        let normed = self.norm3.plan(plan, x);
        self.ff.plan(plan, normed)
    }
}

/// sgm's `VideoTransformerBlock`: the same, but attending across frames at each pixel, with an
/// extra feed-forward in front (`ff_in`, SV3D's `extra_ff_mix_layer`).
struct TemporalBlock {
    ff_in: Option<(LayerNorm, FeedForward)>,
    spatial: SpatialBlock,
}

impl TemporalBlock {
    fn load(
        p: &Params,
        dim: usize,
        context_dim: usize,
        heads: usize,
        head_dim: usize,
        ff_in: bool,
    ) -> Self {
        Self {
            ff_in: ff_in.then(|| {
                (
                    LayerNorm::load(&p.at("norm_in"), dim, LAYER_NORM_EPS),
                    FeedForward::load(&p.at("ff_in"), dim, dim),
                )
            }),
            spatial: SpatialBlock::load(p, dim, context_dim, heads, head_dim),
        }
    }

    /// `x`: [batch·frames, pixels, c]; `context`: [batch·pixels, tokens, context_dim].
    fn forward(&self, x: Tensor<3>, context: Tensor<3>, frames: usize) -> Tensor<3> {
        let [n, s, c] = x.dims();
        let b = n / frames;
        let mut x = x
            .reshape([b, frames, s, c])
            .swap_dims(1, 2)
            .reshape([b * s, frames, c]);
        if let Some((norm, ff)) = &self.ff_in {
            x = ff.forward(norm.forward(x.clone())) + x;
        }
        self.spatial
            .forward(x, context)
            .reshape([b, s, frames, c])
            .swap_dims(1, 2)
            .reshape([n, s, c])
    }

    fn plan(
        &self,
        plan: &mut TensorPlan,
        x: [usize; 3],
        context: [usize; 3],
        frames: usize,
    ) -> [usize; 3] {
        let [n, s, c] = x;
        let by_pixel = plan.tensor("frames by pixel", &[n / frames * s, frames, c]);
        if let Some((norm, ff)) = &self.ff_in {
            let normed = norm.plan(plan, by_pixel);
            ff.plan(plan, normed);
        }
        self.spatial.plan(plan, by_pixel, context);
        plan.tensor("frames back in order", &x)
    }
}

/// sgm's `SpatialVideoTransformer` with linear in/out projections.
struct VideoTransformer {
    norm: GroupNorm,
    proj_in: Linear,
    blocks: Vec<(SpatialBlock, TemporalBlock)>,
    time_pos_embed: Mlp,
    time_mixer: TimeMixer,
    proj_out: Linear,
    channels: usize,
    device: Device,
}

impl VideoTransformer {
    fn load(p: &Params, channels: usize, cfg: &UnetConfig) -> Self {
        let head_dim = cfg.num_head_channels;
        let heads = channels / head_dim;
        let blocks = (0..cfg.transformer_depth)
            .map(|d| {
                (
                    SpatialBlock::load(
                        &p.at("transformer_blocks").at(d),
                        channels,
                        cfg.context_dim,
                        heads,
                        head_dim,
                    ),
                    TemporalBlock::load(
                        &p.at("time_stack").at(d),
                        channels,
                        cfg.context_dim,
                        heads,
                        head_dim,
                        cfg.extra_ff_mix_layer,
                    ),
                )
            })
            .collect();
        Self {
            norm: GroupNorm::load(&p.at("norm"), GROUPS, channels, TRANSFORMER_NORM_EPS),
            proj_in: Linear::load(&p.at("proj_in"), channels, channels, true),
            blocks,
            time_pos_embed: Mlp::load(&p.at("time_pos_embed"), channels, 4 * channels, channels),
            time_mixer: TimeMixer::load(&p.at("time_mixer")),
            proj_out: Linear::load(&p.at("proj_out"), channels, channels, true),
            channels,
            device: p.device().clone(),
        }
    }

    /// `context`: [batch·frames, tokens, context_dim].
    fn forward(&self, x: Tensor<4>, context: Tensor<3>, frames: usize) -> Tensor<4> {
        let [n, c, h, w] = x.dims();
        let b = n / frames;
        let x_in = x.clone();
        let tokens = self
            .proj_in
            .forward(self.norm.forward(x).reshape([n, c, h * w]).swap_dims(1, 2));
        // The temporal layers attend to each video's first-frame context, at every pixel.
        let [_, k, d] = context.dims();
        let time_context = context
            .clone()
            .reshape([b, frames, k, d])
            .slice([0..b, 0..1, 0..k, 0..d])
            .reshape([b, 1, k, d])
            .expand([b, h * w, k, d])
            .reshape([b * h * w, k, d]);
        let frame_index: Vec<f32> = (0..n).map(|i| (i % frames) as f32).collect();
        let position = self
            .time_pos_embed
            .forward(
                embedding_tensor(&frame_index, self.channels, 10_000.0, &self.device)
                    .cast(FloatDType::from(tokens.dtype())),
            )
            .reshape([n, 1, c]);
        let mut x = tokens;
        for (spatial, temporal) in &self.blocks {
            x = spatial.forward(x, context.clone());
            let mixed =
                temporal.forward(x.clone() + position.clone(), time_context.clone(), frames);
            x = self.time_mixer.forward(x, mixed);
        }
        let tokens = self.proj_out.forward(x);
        tokens.swap_dims(1, 2).reshape([n, c, h, w]) + x_in
    }

    fn plan(
        &self,
        plan: &mut TensorPlan,
        x: [usize; 4],
        context: [usize; 3],
        frames: usize,
    ) -> [usize; 4] {
        let [n, c, h, w] = x;
        self.norm.plan(plan, x);
        let tokens = plan.tensor("tokens", &[n, h * w, c]);
        let tokens = self.proj_in.plan(plan, tokens);
        let [_, k, d] = context;
        let time_context = plan.tensor("time context", &[n / frames * h * w, k, d]);
        self.time_pos_embed.plan(plan, [n, c]);
        for (spatial, temporal) in &self.blocks {
            spatial.plan(plan, tokens, context);
            temporal.plan(plan, tokens, time_context, frames);
            self.time_mixer.plan(plan, tokens);
        }
        self.proj_out.plan(plan, tokens);
        plan.tensor("transformer output", &x)
    }
}

/// One entry of a `TimestepEmbedSequential`.
enum Layer {
    Conv(Conv2d),
    Res(Box<VideoResBlock>),
    Transformer(Box<VideoTransformer>),
    /// Stride-2 convolution (`Downsample` with `conv_resample`).
    Down(Conv2d),
    /// Nearest ×2, then a convolution (`Upsample` with `conv_resample`).
    Up(Conv2d),
}

impl Layer {
    fn forward(
        &self,
        x: Tensor<4>,
        emb: &Tensor<2>,
        context: &Tensor<3>,
        frames: usize,
    ) -> Tensor<4> {
        match self {
            Layer::Conv(conv) | Layer::Down(conv) => conv.forward(x),
            Layer::Res(block) => block.forward(x, emb.clone(), frames),
            Layer::Transformer(t) => t.forward(x, context.clone(), frames),
            Layer::Up(conv) => {
                let [n, c, h, w] = x.dims();
                let doubled = x
                    .reshape([n, c, h, 1, w, 1])
                    .expand([n, c, h, 2, w, 2])
                    .reshape([n, c, 2 * h, 2 * w]);
                conv.forward(doubled)
            }
        }
    }

    fn plan(
        &self,
        plan: &mut TensorPlan,
        x: [usize; 4],
        context: [usize; 3],
        frames: usize,
    ) -> [usize; 4] {
        match self {
            Layer::Conv(conv) | Layer::Down(conv) => conv.plan(plan, x),
            Layer::Res(block) => block.plan(plan, x, frames),
            Layer::Transformer(t) => t.plan(plan, x, context, frames),
            Layer::Up(conv) => {
                let [n, c, h, w] = x;
                let doubled = plan.tensor("upsampled", &[n, c, 2 * h, 2 * w]);
                conv.plan(plan, doubled)
            }
        }
    }
}

type Block = Vec<Layer>;

fn run(
    block: &Block,
    mut x: Tensor<4>,
    emb: &Tensor<2>,
    context: &Tensor<3>,
    frames: usize,
) -> Tensor<4> {
    for layer in block {
        x = layer.forward(x, emb, context, frames);
    }
    x
}

fn plan_run(
    block: &Block,
    mut x: [usize; 4],
    plan: &mut TensorPlan,
    context: [usize; 3],
    frames: usize,
) -> [usize; 4] {
    for layer in block {
        x = layer.plan(plan, x, context, frames);
    }
    x
}

/// The conditioning of one UNet call.
pub struct UnetInputs {
    /// [batch·frames, in_channels, h, w]: the noisy latents and the conditioning image's latent.
    pub x: Tensor<4>,
    /// [batch·frames]: the noise level as the network sees it (c_noise).
    pub timesteps: Vec<f32>,
    /// [batch·frames, tokens, context_dim]: the CLIP token per frame.
    pub context: Tensor<3>,
    /// [batch·frames, adm_in_channels]: the conditioning-augmentation and camera embedding.
    pub y: Tensor<2>,
    pub frames: usize,
}

/// sgm's `VideoUNet`.
pub struct VideoUnet {
    time_embed: Mlp,
    label_emb: Mlp,
    input_blocks: Vec<Block>,
    middle_block: Block,
    output_blocks: Vec<Block>,
    out_norm: GroupNorm,
    out_conv: Conv2d,
    model_channels: usize,
    device: Device,
    /// The weights' float type; inputs are cast to it, the output back to f32.
    dtype: FloatDType,
}

impl VideoUnet {
    /// `p`: the weights under `model.diffusion_model`.
    pub fn load(p: &Params, cfg: &UnetConfig) -> Self {
        let mc = cfg.model_channels;
        let emb = 4 * mc;
        let res = |p: &Params, c_in, c_out| {
            Layer::Res(Box::new(VideoResBlock::load(p, c_in, c_out, emb, cfg)))
        };
        let transformer =
            |p: &Params, c| Layer::Transformer(Box::new(VideoTransformer::load(p, c, cfg)));
        let blocks = p.at("input_blocks");
        let mut input_blocks = vec![vec![Layer::Conv(Conv2d::load(
            &blocks.at("0.0"),
            cfg.in_channels,
            mc,
            3,
            1,
            1,
        ))]];
        let mut skip_channels = vec![mc];
        let (mut ch, mut ds) = (mc, 1);
        for (level, mult) in cfg.channel_mult.iter().enumerate() {
            for _ in 0..cfg.num_res_blocks {
                let p = blocks.at(input_blocks.len());
                let mut block = vec![res(&p.at(0), ch, mult * mc)];
                ch = mult * mc;
                if cfg.attention_resolutions.contains(&ds) {
                    block.push(transformer(&p.at(1), ch));
                }
                input_blocks.push(block);
                skip_channels.push(ch);
            }
            if level + 1 != cfg.channel_mult.len() {
                let p = blocks.at(input_blocks.len()).at("0.op");
                input_blocks.push(vec![Layer::Down(Conv2d::load(&p, ch, ch, 3, 2, 1))]);
                skip_channels.push(ch);
                ds *= 2;
            }
        }
        let middle = p.at("middle_block");
        let middle_block = vec![
            res(&middle.at(0), ch, ch),
            transformer(&middle.at(1), ch),
            res(&middle.at(2), ch, ch),
        ];
        let blocks = p.at("output_blocks");
        let mut output_blocks = Vec::new();
        for (level, mult) in cfg.channel_mult.iter().enumerate().rev() {
            for i in 0..=cfg.num_res_blocks {
                let p = blocks.at(output_blocks.len());
                let skip = skip_channels.pop().expect("one skip per input block");
                let mut block = vec![res(&p.at(0), ch + skip, mult * mc)];
                ch = mult * mc;
                if cfg.attention_resolutions.contains(&ds) {
                    block.push(transformer(&p.at(1), ch));
                }
                if level > 0 && i == cfg.num_res_blocks {
                    let up = p.at(block.len()).at("conv");
                    block.push(Layer::Up(Conv2d::load(&up, ch, ch, 3, 1, 1)));
                    ds /= 2;
                }
                output_blocks.push(block);
            }
        }
        Self {
            time_embed: Mlp::load(&p.at("time_embed"), mc, emb, emb),
            label_emb: Mlp::load(&p.at("label_emb.0"), cfg.adm_in_channels, emb, emb),
            input_blocks,
            middle_block,
            output_blocks,
            out_norm: GroupNorm::load(&p.at("out.0"), GROUPS, ch, RES_NORM_EPS),
            out_conv: Conv2d::load(&p.at("out.2"), mc, cfg.out_channels, 3, 1, 1),
            model_channels: mc,
            device: p.device().clone(),
            dtype: p.dtype(),
        }
    }

    /// The weights' float type, which the network computes in.
    pub fn dtype(&self) -> FloatDType {
        self.dtype
    }

    /// The network's output for one call: [batch·frames, out_channels, h, w].
    pub fn forward(&self, inputs: UnetInputs) -> Tensor<4> {
        self.forward_traced(inputs, |_, _| {})
    }

    /// [`VideoUnet::forward`], handing each stage's output to `trace` by the reference's names
    /// (`time_embed`, `label_emb`, `input_blocks.N`, `middle_block`, `output_blocks.N`), so a port
    /// that diverges shows where.
    pub fn forward_traced(
        &self,
        inputs: UnetInputs,
        mut trace: impl FnMut(&str, Tensor<4>),
    ) -> Tensor<4> {
        let UnetInputs {
            x,
            timesteps,
            context,
            y,
            frames,
        } = inputs;
        let (x, context, y) = (
            x.cast(self.dtype),
            context.cast(self.dtype),
            y.cast(self.dtype),
        );
        let t = embedding_tensor(&timesteps, self.model_channels, 10_000.0, &self.device)
            .cast(self.dtype);
        let time = self.time_embed.forward(t);
        let label = self.label_emb.forward(y);
        let [n, e] = time.dims();
        trace("time_embed", time.clone().reshape([n, e, 1, 1]));
        trace("label_emb", label.clone().reshape([n, e, 1, 1]));
        let emb = time + label;
        let mut skips = Vec::with_capacity(self.input_blocks.len());
        let mut h = x;
        for (i, block) in self.input_blocks.iter().enumerate() {
            h = run(block, h, &emb, &context, frames);
            trace(&format!("input_blocks.{i}"), h.clone());
            skips.push(h.clone());
        }
        h = run(&self.middle_block, h, &emb, &context, frames);
        trace("middle_block", h.clone());
        for (i, block) in self.output_blocks.iter().enumerate() {
            let skip = skips.pop().expect("one skip per output block");
            h = run(block, Tensor::cat(vec![h, skip], 1), &emb, &context, frames);
            trace(&format!("output_blocks.{i}"), h.clone());
        }
        self.out_conv
            .forward(self.out_norm.forward_silu(h))
            .cast(FloatDType::F32)
    }

    /// The tensors of one [`VideoUnet::forward`] on inputs of these shapes (`x` [batch·frames,
    /// in_channels, h, w], `context` [batch·frames, tokens, context_dim], `y` [batch·frames,
    /// adm_in_channels]), planned from shapes alone; `trace` sees each block's output shape by
    /// the names [`VideoUnet::forward_traced`] uses.
    pub fn plan(
        &self,
        plan: &mut TensorPlan,
        [x, y]: [[usize; 4]; 2],
        context: [usize; 3],
        frames: usize,
        mut trace: impl FnMut(&str, [usize; 4]),
    ) -> [usize; 4] {
        let n = x[0];
        let time = self.time_embed.plan(plan, [n, self.model_channels]);
        self.label_emb.plan(plan, [n, y[1]]);
        trace("time_embed", [n, time[1], 1, 1]);
        trace("label_emb", [n, time[1], 1, 1]);
        let mut skips = Vec::with_capacity(self.input_blocks.len());
        let mut h = x;
        for (i, block) in self.input_blocks.iter().enumerate() {
            h = plan_run(block, h, plan, context, frames);
            trace(&format!("input_blocks.{i}"), h);
            skips.push(h);
        }
        h = plan_run(&self.middle_block, h, plan, context, frames);
        trace("middle_block", h);
        for (i, block) in self.output_blocks.iter().enumerate() {
            let skip = skips.pop().expect("one skip per output block");
            let joined = plan.tensor("skip joined", &[n, h[1] + skip[1], h[2], h[3]]);
            h = plan_run(block, joined, plan, context, frames);
            trace(&format!("output_blocks.{i}"), h);
        }
        let normed = self.out_norm.plan(plan, h);
        let out = self.out_conv.plan(plan, normed);
        plan.tensor_f32("UNet output", &out)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;
    use orbitmesh_nn::parity::{FLEX_REL, WGPU_REL, assert_close, wgpu};

    use super::*;
    use crate::fixture::fixture;
    use crate::prefix;

    #[test]
    fn every_block_matches_the_reference_run_on_flex() {
        every_block_matches_the_reference_run(Device::flex(), FLEX_REL);
    }

    #[test]
    fn every_block_matches_the_reference_run_on_wgpu() {
        if let Some(device) = wgpu() {
            every_block_matches_the_reference_run(device, WGPU_REL);
        }
    }

    fn every_block_matches_the_reference_run(device: Device, rel: f32) {
        let Some(fx) = fixture(&device) else {
            return;
        };
        let unet = VideoUnet::load(&fx.weights.root().at(prefix::UNET), &fx.config.unet);
        fx.weights.finish(&[prefix::UNET]).unwrap();
        let frames = 21;
        let clip: Tensor<3> = fx.io("clip_embedding");
        let [_, k, d] = clip.dims();
        let timesteps: Tensor<1> = fx.io("unet_timesteps");
        let inputs = UnetInputs {
            x: fx.io("unet_x"),
            timesteps: timesteps.into_data().try_to_vec().unwrap(),
            context: clip.expand([frames, k, d]),
            y: fx.io("vector_y"),
            frames,
        };
        // The shape-only plan follows the forward block by block.
        let mut planned = Vec::new();
        let dims = |t: &Tensor<4>| t.dims();
        let x_dims = dims(&inputs.x);
        let y_dims = inputs.y.dims();
        unet.plan(
            &mut TensorPlan::new(4),
            [x_dims, [y_dims[0], y_dims[1], 1, 1]],
            inputs.context.dims(),
            frames,
            |name, shape| planned.push((name.to_string(), shape)),
        );
        let mut ran = Vec::new();
        let mut checked = Vec::new();
        let out = unet.forward_traced(inputs, |name, got| {
            ran.push((name.to_string(), got.dims()));
            let (values, shape) = fx.io.read(&format!("unet.{name}")).unwrap();
            let dims = got.dims();
            let trimmed: Vec<usize> = dims[..shape.len()].to_vec();
            assert_eq!(trimmed, shape, "{name}: shape");
            let count = values.len();
            let expected = Tensor::<1>::from_data(TensorData::new(values, [count]), &fx.device);
            assert_close(name, got.reshape([count]), expected, rel);
            checked.push(name.to_string());
        });
        assert_eq!(checked.len(), 2 + 12 + 1 + 12, "{checked:?}");
        assert_eq!(planned, ran, "the plan's block shapes");
        assert_close("unet_out", out, fx.io("unet_out"), rel);
    }
}
