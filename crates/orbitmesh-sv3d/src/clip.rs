//! The cross-attention token: OpenCLIP's ViT image tower (ViT-H/14 in the published model) and the
//! preprocessing sgm's `FrozenOpenCLIPImageEmbedder` puts in front of it, loaded by the
//! checkpoint's names under [`prefix::CLIP`](super::prefix::CLIP)`.visual`.
//!
//! The preprocessing is kornia's `resize` (bicubic, `align_corners=True`, antialiased) to the
//! tower's input size, then `[-1, 1] → [0, 1]` and CLIP's mean/std. It runs on the CPU over plain
//! `f32` planes: it is a few million multiply-adds, and doing it by hand keeps kornia's exact
//! border rules (reflected blur, clamped cubic taps) in view. The embedder's output token is
//! `ln_post(class token) @ proj`, one per image.

use burn::tensor::activation::gelu;
use burn::tensor::module::{conv2d, linear};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{FloatDType, Tensor, TensorData};
use orbitmesh_nn::layers::{LayerNorm, multi_head_attention};
use orbitmesh_nn::weights::Params;

use super::{ClipConfig, prefix};

/// CLIP's training statistics, which the tower expects its `[0, 1]` input normalised by.
const MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
const STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

/// OpenCLIP's `LayerNorm` keeps PyTorch's default ε.
const LN_EPS: f64 = 1e-5;
/// OpenCLIP's default `mlp_ratio`, which ViT-H/14 uses.
const MLP_RATIO: usize = 4;
/// PyTorch's bicubic kernel parameter (Keys' `a`), not the −0.5 of some other libraries.
const CUBIC_A: f64 = -0.75;

/// `[B, 3, H, W]` in `[-1, 1]` → `[B, 3, size, size]` normalised as the CLIP tower expects.
pub fn preprocess(image: Tensor<4>, size: usize) -> Tensor<4> {
    let [batch, channels, h, w] = image.dims();
    assert_eq!(channels, 3, "CLIP preprocessing takes RGB images");
    let device = image.device();
    let pixels: Vec<f32> = image.into_data().try_to_vec().unwrap();
    let mut out = Vec::with_capacity(batch * channels * size * size);
    for (index, plane) in pixels.chunks_exact(h * w).enumerate() {
        let channel = index % channels;
        let resized = resize(plane, [h, w], [size, size]);
        out.extend(
            resized
                .into_iter()
                .map(|v| ((v + 1.0) / 2.0 - MEAN[channel]) / STD[channel]),
        );
    }
    Tensor::from_data(TensorData::new(out, [batch, channels, size, size]), &device)
}

/// kornia's `resize(..., interpolation="bicubic", align_corners=True, antialias=True)` of one
/// row-major plane. The blur happens on both axes as soon as either one shrinks (kornia decides
/// once for the image); an axis that does not shrink gets a σ of 0.001, which is the identity.
fn resize(plane: &[f32], [h, w]: [usize; 2], [out_h, out_w]: [usize; 2]) -> Vec<f32> {
    let factors = [h as f64 / out_h as f64, w as f64 / out_w as f64];
    let mut data = plane.to_vec();
    if factors[0].max(factors[1]) > 1.0 {
        let [ky, kx] = factors.map(|f| gaussian_kernel(((f - 1.0) / 2.0).max(0.001)));
        data = blur_axis(&data, [h, w], &kx, false);
        data = blur_axis(&data, [h, w], &ky, true);
    }
    let data = bicubic_axis(&data, [h, w], out_w, false);
    bicubic_axis(&data, [h, out_w], out_h, true)
}

/// kornia's Gaussian for antialiasing: width `int(max(4σ, 3))` rounded up to odd, centred taps,
/// normalised to sum 1.
fn gaussian_kernel(sigma: f64) -> Vec<f32> {
    let mut size = (4.0 * sigma).max(3.0) as usize;
    if size.is_multiple_of(2) {
        size += 1;
    }
    let centre = (size / 2) as f64;
    let taps: Vec<f64> = (0..size)
        .map(|i| (-(i as f64 - centre).powi(2) / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f64 = taps.iter().sum();
    taps.iter().map(|t| (t / total) as f32).collect()
}

/// PyTorch's `reflect` padding (the edge sample is not repeated), folded again where a kernel
/// reaches further than the plane is long; PyTorch refuses that case, so any fold is faithful.
fn reflect(i: isize, len: usize) -> usize {
    if len == 1 {
        return 0;
    }
    let period = 2 * (len as isize - 1);
    let folded = i.rem_euclid(period);
    (if folded < len as isize {
        folded
    } else {
        period - folded
    }) as usize
}

/// Correlates every row (`vertical` false) or column with an odd `kernel`, borders reflected.
fn blur_axis(data: &[f32], [h, w]: [usize; 2], kernel: &[f32], vertical: bool) -> Vec<f32> {
    let radius = (kernel.len() / 2) as isize;
    let (len, stride) = if vertical { (h, w) } else { (w, 1) };
    let mut out = vec![0.0; h * w];
    for y in 0..h {
        for x in 0..w {
            let (pos, base) = if vertical { (y, x) } else { (x, y * w) };
            out[y * w + x] = kernel
                .iter()
                .enumerate()
                .map(|(k, &g)| {
                    let j = reflect(pos as isize + k as isize - radius, len);
                    g * data[base + j * stride]
                })
                .sum();
        }
    }
    out
}

/// The four source indices (clamped to the plane) and cubic weights PyTorch's bicubic
/// `align_corners=True` uses for output index `i` of `out_len` taken from `in_len` samples.
fn cubic_taps(i: usize, in_len: usize, out_len: usize) -> ([usize; 4], [f32; 4]) {
    // PyTorch forms the source position in the input's precision; f32 here follows it.
    let scale = if out_len > 1 {
        (in_len - 1) as f32 / (out_len - 1) as f32
    } else {
        0.0
    };
    let real = scale * i as f32;
    let floor = real.floor();
    let t = f64::from(real - floor);
    let near = |x: f64| ((CUBIC_A + 2.0) * x - (CUBIC_A + 3.0)) * x * x + 1.0;
    let far = |x: f64| ((CUBIC_A * x - 5.0 * CUBIC_A) * x + 8.0 * CUBIC_A) * x - 4.0 * CUBIC_A;
    let weights = [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)].map(|c| c as f32);
    let last = in_len as isize - 1;
    let indices = [-1, 0, 1, 2].map(|d| (floor as isize + d).clamp(0, last) as usize);
    (indices, weights)
}

/// Bicubic resampling of every row (`vertical` false) to `out_len` samples, or of every column.
fn bicubic_axis(data: &[f32], [h, w]: [usize; 2], out_len: usize, vertical: bool) -> Vec<f32> {
    let (in_len, stride) = if vertical { (h, w) } else { (w, 1) };
    let taps: Vec<_> = (0..out_len)
        .map(|i| cubic_taps(i, in_len, out_len))
        .collect();
    let [out_h, out_w] = if vertical { [out_len, w] } else { [h, out_len] };
    let mut out = vec![0.0; out_h * out_w];
    for y in 0..out_h {
        for x in 0..out_w {
            let (pos, base) = if vertical { (y, x) } else { (x, y * w) };
            let (indices, weights) = &taps[pos];
            out[y * out_w + x] = indices
                .iter()
                .zip(weights)
                .map(|(&j, &c)| c * data[base + j * stride])
                .sum();
        }
    }
    out
}

/// `ResidualAttentionBlock`: pre-norm `nn.MultiheadAttention` and a GELU MLP, each added back.
struct ResidualBlock {
    ln_1: LayerNorm,
    /// `attn.in_proj_weight` transposed to [width, 3·width] (q, k, v side by side), as `linear`
    /// takes it, and `attn.in_proj_bias`.
    in_proj: (Tensor<2>, Tensor<1>),
    out_proj: (Tensor<2>, Tensor<1>),
    ln_2: LayerNorm,
    c_fc: (Tensor<2>, Tensor<1>),
    c_proj: (Tensor<2>, Tensor<1>),
    heads: usize,
}

/// A `torch.nn.Linear`'s `weight` [out, in] (transposed for `linear`) and `bias`.
fn dense(p: &Params, d_in: usize, d_out: usize) -> (Tensor<2>, Tensor<1>) {
    (
        p.tensor("weight", [d_out, d_in]).transpose(),
        p.tensor("bias", [d_out]),
    )
}

fn apply(layer: &(Tensor<2>, Tensor<1>), x: Tensor<3>) -> Tensor<3> {
    linear(x, layer.0.clone(), Some(layer.1.clone()))
}

impl ResidualBlock {
    fn load(p: &Params, width: usize, heads: usize) -> Self {
        let attn = p.at("attn");
        let mlp = p.at("mlp");
        Self {
            ln_1: LayerNorm::load(&p.at("ln_1"), width, LN_EPS),
            in_proj: (
                attn.tensor("in_proj_weight", [3 * width, width])
                    .transpose(),
                attn.tensor("in_proj_bias", [3 * width]),
            ),
            out_proj: dense(&attn.at("out_proj"), width, width),
            ln_2: LayerNorm::load(&p.at("ln_2"), width, LN_EPS),
            c_fc: dense(&mlp.at("c_fc"), width, MLP_RATIO * width),
            c_proj: dense(&mlp.at("c_proj"), MLP_RATIO * width, width),
            heads,
        }
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, n, width] = x.dims();
        let qkv = apply(&self.in_proj, self.ln_1.forward(x.clone()));
        let part = |i: usize| qkv.clone().slice([0..b, 0..n, i * width..(i + 1) * width]);
        // nn.MultiheadAttention scales q by 1/√head_dim, the attention op's default.
        let attended = multi_head_attention(part(0), part(1), part(2), self.heads);
        let x = x + apply(&self.out_proj, attended);
        let hidden = gelu(apply(&self.c_fc, self.ln_2.forward(x.clone())));
        x + apply(&self.c_proj, hidden)
    }
}

/// OpenCLIP's `VisionTransformer` with class-token pooling and its output projection, behind
/// SV3D's preprocessing.
pub struct ClipImageEncoder {
    /// `conv1.weight` [width, 3, patch, patch]; the patch embedding has no bias.
    patch_embed: Tensor<4>,
    patch: usize,
    image_size: usize,
    class_embedding: Tensor<1>,
    /// [1 + (image_size/patch)², width]: the class token's position first.
    positional_embedding: Tensor<2>,
    ln_pre: LayerNorm,
    blocks: Vec<ResidualBlock>,
    ln_post: LayerNorm,
    /// [width, embed_dim], applied as `x @ proj` (already `linear`'s layout).
    proj: Tensor<2>,
    /// The weights' float type; the preprocessed image is cast to it, the token back to f32.
    dtype: FloatDType,
}

impl ClipImageEncoder {
    /// `p` is the OpenCLIP model ([`prefix::CLIP`]); only its `visual` tower is read.
    pub fn load(p: &Params, cfg: &ClipConfig) -> Self {
        let v = &cfg.vision_cfg;
        let p = p.at("visual");
        let heads = v.width / v.head_width;
        let tokens = 1 + (v.image_size / v.patch_size).pow(2);
        let resblocks = p.at("transformer.resblocks");
        Self {
            patch_embed: p.tensor("conv1.weight", [v.width, 3, v.patch_size, v.patch_size]),
            patch: v.patch_size,
            image_size: v.image_size,
            class_embedding: p.tensor("class_embedding", [v.width]),
            positional_embedding: p.tensor("positional_embedding", [tokens, v.width]),
            ln_pre: LayerNorm::load(&p.at("ln_pre"), v.width, LN_EPS),
            blocks: (0..v.layers)
                .map(|i| ResidualBlock::load(&resblocks.at(i), v.width, heads))
                .collect(),
            ln_post: LayerNorm::load(&p.at("ln_post"), v.width, LN_EPS),
            proj: p.tensor("proj", [v.width, cfg.embed_dim]),
            dtype: p.dtype(),
        }
    }

    /// The checkpoint prefix this encoder reads, for [`Weights::finish`](super::Weights::finish):
    /// the text tower's leftovers beside it are not loaded.
    pub fn scope() -> String {
        format!("{}.visual.", prefix::CLIP)
    }

    /// `image` [B, 3, H, W] in `[-1, 1]` → the cross-attention token [B, 1, embed_dim].
    pub fn forward(&self, image: Tensor<4>) -> Tensor<3> {
        let x = preprocess(image.cast(FloatDType::F32), self.image_size).cast(self.dtype);
        let options = ConvOptions::new([self.patch; 2], [0, 0], [1, 1], 1);
        let patches = conv2d(x, self.patch_embed.clone(), None, options);
        let [b, width, gh, gw] = patches.dims();
        let patches = patches.reshape([b, width, gh * gw]).swap_dims(1, 2);
        let class = self
            .class_embedding
            .clone()
            .reshape([1, 1, width])
            .expand([b, 1, width]);
        let x =
            Tensor::cat(vec![class, patches], 1) + self.positional_embedding.clone().unsqueeze();
        let x = self
            .blocks
            .iter()
            .fold(self.ln_pre.forward(x), |x, block| block.forward(x));
        let token = self.ln_post.forward(x.slice([0..b, 0..1, 0..width]));
        linear(token, self.proj.clone(), None).cast(FloatDType::F32)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;
    use orbitmesh_nn::parity::{FLEX_REL, WGPU_REL, assert_close, wgpu};

    use super::*;
    use crate::fixture::fixture;

    #[test]
    fn preprocessing_and_embedding_match_the_reference_run_on_flex() {
        preprocessing_and_embedding_match_the_reference_run(Device::flex(), FLEX_REL);
    }

    #[test]
    fn preprocessing_and_embedding_match_the_reference_run_on_wgpu() {
        if let Some(device) = wgpu() {
            preprocessing_and_embedding_match_the_reference_run(device, WGPU_REL);
        }
    }

    fn preprocessing_and_embedding_match_the_reference_run(device: Device, rel: f32) {
        let Some(fx) = fixture(&device) else {
            return;
        };
        let cfg = &fx.config.open_clip;
        let encoder = ClipImageEncoder::load(&fx.weights.root().at(prefix::CLIP), cfg);
        fx.weights.finish(&[&ClipImageEncoder::scope()]).unwrap();

        let image: Tensor<4> = fx.io("image");
        let preprocessed = preprocess(image.clone(), cfg.vision_cfg.image_size);
        assert_close(
            "clip_preprocessed",
            preprocessed,
            fx.io("clip_preprocessed"),
            rel,
        );
        assert_close(
            "clip_embedding",
            encoder.forward(image),
            fx.io("clip_embedding"),
            rel,
        );
    }

    /// The normalised 5-tap Gaussian kornia uses for a 3× downscale (σ = (3 − 1)/2 = 1, width
    /// int(4σ) = 4 made odd), at offsets 0, 1, 2.
    fn sigma_one_taps() -> [f32; 3] {
        let raw = [1.0f64, (-0.5f64).exp(), (-2.0f64).exp()];
        let total = raw[0] + 2.0 * (raw[1] + raw[2]);
        raw.map(|r| (r / total) as f32)
    }

    /// 9 → 3 with align_corners puts every output exactly on source pixel 0, 4 or 8, so the
    /// output is the blurred image sampled there and can be written down by hand.
    fn downscale_9_to_3(hot: (usize, usize)) -> Vec<f32> {
        let mut plane = vec![0.0; 81];
        plane[hot.0 * 9 + hot.1] = 1.0;
        resize(&plane, [9, 9], [3, 3])
    }

    fn assert_plane(got: &[f32], expected: &[f32]) {
        for (i, (g, e)) in got.iter().zip(expected).enumerate() {
            assert!(
                (g - e).abs() < 1e-6,
                "pixel {i}: got {g}, expected {e}\n{got:?}"
            );
        }
    }

    #[test]
    fn antialiased_downscale_blurs_with_kornias_gaussian_and_reflected_borders() {
        let [g0, g1, _] = sigma_one_taps();
        // A centred impulse: only the centre output is within the kernel's reach.
        let mut expected = vec![0.0; 9];
        expected[4] = g0 * g0;
        assert_plane(&downscale_9_to_3((4, 4)), &expected);
        // One row in from the top edge: the tap at row −1 reflects onto row 1, so output row 0
        // collects it twice (replicated borders would give g1 once).
        let mut expected = vec![0.0; 9];
        expected[1] = 2.0 * g1 * g0;
        assert_plane(&downscale_9_to_3((1, 4)), &expected);
    }

    #[test]
    fn resizing_keeps_a_constant_image_constant() {
        let device = Device::flex();
        let value = 0.3f32;
        let image = Tensor::<4>::full([2, 3, 576, 576], value, &device);
        let out: Vec<f32> = preprocess(image, 224).into_data().try_to_vec().unwrap();
        assert_eq!(out.len(), 2 * 3 * 224 * 224);
        for (plane, values) in out.chunks_exact(224 * 224).enumerate() {
            let c = plane % 3;
            let expected = ((value + 1.0) / 2.0 - MEAN[c]) / STD[c];
            for v in values {
                assert!(
                    (v - expected).abs() < 1e-5,
                    "plane {plane}: {v} vs {expected}"
                );
            }
        }
    }
}
