//! From a photo to SV3D's input: find the object's mask (a mask file, the alpha channel, or a
//! segmenter: the learned IS-Net of [`crate::isnet`] or the classical background model), then
//! crop and scale so the object fills `fill` of a square frame, centred.
//!
//! The classical background model has classical limits: it takes the colour of the image
//! border as the background (median of a thin frame around the image), grows the background from
//! the border through pixels close to that colour, and keeps the largest remaining component as
//! the object. It works for objects on plain, evenly lit backgrounds that do not touch the border;
//! it fails on cluttered scenes, on objects the colour of their background, and on soft shadows
//! (which it keeps as object). For those, give a mask or an image with alpha.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use image::imageops::{self, FilterType};
use image::{GrayImage, Luma, Rgba, RgbaImage};
use nalgebra::{Similarity3, Translation3, UnitQuaternion};
use orbitmesh_nn::weights::WeightsError;
use orbitmesh_render::Camera;
use serde::{Deserialize, Serialize};

use crate::isnet::IsNet;

#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("{}: {message}", path.display())]
    Input { path: PathBuf, message: String },
    #[error("the IS-Net segmenter")]
    Segmenter(#[from] WeightsError),
}

fn input_error(path: &Path, message: impl Into<String>) -> PrepareError {
    PrepareError::Input {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskSource {
    Alpha,
    File,
    /// The IS-Net segmenter.
    Isnet,
    /// The classical background model.
    BackgroundModel,
    /// No segmentation: the whole image is the object.
    WholeImage,
}

/// How to find the object in an image that has no alpha channel and no mask file.
#[derive(Clone)]
pub enum Segmenter {
    /// The learned IS-Net, loaded from these weights (made by `orbitmesh models fetch isnet`)
    /// only when an image needs it, and run on `device`.
    Isnet { weights: PathBuf, device: Device },
    /// The classical background model (see the module documentation for its limits).
    Classical,
    /// None: the whole image is the object.
    None,
}

/// The segmenter a user asks for (the CLI's `--segmenter`, `serve`'s option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SegmenterRequest {
    /// IS-Net where it is installed, else the classical model.
    #[default]
    Auto,
    Isnet,
    Classical,
    /// The whole image is the object.
    None,
}

/// A segmenter chosen for a request, and whether it fell back to the classical model because
/// IS-Net is not installed (worth a note when a photo needs it).
pub struct SegmenterChoice {
    pub segmenter: Segmenter,
    pub fell_back: bool,
}

impl SegmenterRequest {
    /// The segmenter for this request, IS-Net's weights being at `installed` if it is
    /// installed (`install::installed()`); `device` is asked for only when IS-Net is used. None
    /// when IS-Net is asked for by name and not installed.
    pub fn choose<E>(
        self,
        installed: Option<PathBuf>,
        device: impl FnOnce() -> Result<Device, E>,
    ) -> Result<Option<SegmenterChoice>, E> {
        let (segmenter, fell_back) = match (self, installed) {
            (SegmenterRequest::Isnet, None) => return Ok(None),
            (SegmenterRequest::Auto | SegmenterRequest::Isnet, Some(weights)) => (
                Segmenter::Isnet {
                    weights,
                    device: device()?,
                },
                false,
            ),
            (SegmenterRequest::Auto, None) => (Segmenter::Classical, true),
            (SegmenterRequest::Classical, _) => (Segmenter::Classical, false),
            (SegmenterRequest::None, _) => (Segmenter::None, false),
        };
        Ok(Some(SegmenterChoice {
            segmenter,
            fell_back,
        }))
    }
}

impl Segmenter {
    /// Its name on the command line and in stage records.
    pub fn name(&self) -> &'static str {
        match self {
            Segmenter::Isnet { .. } => "isnet",
            Segmenter::Classical => "classical",
            Segmenter::None => "none",
        }
    }
}

impl std::fmt::Debug for Segmenter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Segmenter::Isnet { weights, .. } => write!(f, "isnet({})", weights.display()),
            other => f.write_str(other.name()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PrepareOptions {
    /// Output side in pixels (SV3D: 576).
    pub size: u32,
    /// Fraction of the frame the object's longer side fills (SV3D: about 0.85).
    pub fill: f32,
    /// A mask image (white = object) to use instead of alpha or the segmenter.
    pub mask: Option<PathBuf>,
    /// Finds the object when there is neither a mask nor an alpha channel.
    pub segmenter: Segmenter,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        PrepareOptions {
            size: 576,
            fill: 0.85,
            mask: None,
            segmenter: Segmenter::Classical,
        }
    }
}

pub struct Prepared {
    /// The object's mask at the input image's size (white = object).
    pub mask: GrayImage,
    /// The object on a transparent background.
    pub rgba: RgbaImage,
    /// The same composited over white, as SV3D is conditioned.
    pub white: RgbaImage,
    pub mask_source: MaskSource,
    pub crop: Crop,
}

/// The square of the photo that became the prepared image, in the photo's pixels (it may reach
/// past the photo's edges, which count as background).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Crop {
    pub left: i64,
    pub top: i64,
    pub side: u32,
    /// The photo's size.
    pub width: u32,
    pub height: u32,
}

impl Crop {
    /// Takes a mesh made from the prepared image seen by `input` (which looks at the origin) to
    /// where `input` would see the object as the photo shows it, had `input` taken the photo
    /// with its field of view across the photo's longer side: prepare's zoom and recentring
    /// undone. Exact on the plane through the origin facing the camera; elsewhere it is a
    /// uniform scale, so the perspective across the object's depth is not undone.
    pub fn to_photo_frame(&self, input: &Camera) -> Similarity3<f64> {
        let k = input.intrinsics;
        let long = f64::from(self.width.max(self.height));
        // One photo pixel on the plane through the origin.
        let pixel = input.position().norm() / k.fx * f64::from(k.width) / long;
        let side = f64::from(self.side);
        let across = (self.left as f64 + side / 2.0 - f64::from(self.width) / 2.0) * pixel;
        let down = (self.top as f64 + side / 2.0 - f64::from(self.height) / 2.0) * pixel;
        let axes = input.camera_to_world.fixed_view::<3, 3>(0, 0);
        let shift = axes.column(0) * across - axes.column(1) * down;
        Similarity3::from_parts(
            Translation3::from(shift),
            UnitQuaternion::identity(),
            side / long,
        )
    }
}

const MIN_SIDE: u32 = 8;

/// The most pixels a photo or mask may declare (7,700 × 5,200, say; `prepare` makes 576²): a
/// JPEG decoder's own buffers are not held to the image crate's limits, and a few kilobytes of
/// JPEG can declare any size, so the declared size is what bounds the decoding's memory.
const MAX_PIXELS: u64 = 40_000_000;

/// Decodes an image after checking the size its header declares against [`MAX_PIXELS`].
fn open_bounded(path: &Path) -> Result<image::DynamicImage, String> {
    let reader = || {
        image::ImageReader::open(path)
            .and_then(|r| r.with_guessed_format())
            .map_err(|e| e.to_string())
    };
    let (w, h) = reader()?.into_dimensions().map_err(|e| e.to_string())?;
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(format!(
            "{w}×{h} is more than {} megapixels: downscale it first",
            MAX_PIXELS / 1_000_000
        ));
    }
    reader()?.decode().map_err(|e| e.to_string())
}

/// The longest side prepare works at. A photo is reduced to it (area averaging) as soon as it
/// is decoded: the segmenters, the mask and the crop then hold a few bytes per working pixel
/// (IS-Net sees 1024² anyway), not per photo pixel, so a 40-megapixel photo costs its decoding
/// and no more; an object a fifth of such a photo's width still spans more pixels than the 576²
/// output gives it.
const WORK_SIDE: u32 = 3072;

/// `img` reduced so its longer side is at most [`WORK_SIDE`], and the factor from the reduced
/// image's pixels to the photo's.
fn reduced(img: image::DynamicImage) -> (image::DynamicImage, f64) {
    let long = img.width().max(img.height());
    if long <= WORK_SIDE {
        return (img, 1.0);
    }
    let small = img.thumbnail(WORK_SIDE, WORK_SIDE);
    let factor = f64::from(long) / f64::from(small.width().max(small.height()));
    (small, factor)
}

/// Prepares `image_path`. Every check on the input happens here, before any long work.
pub fn prepare(image_path: &Path, opts: &PrepareOptions) -> Result<Prepared, PrepareError> {
    let decoded = open_bounded(image_path)
        .map_err(|e| input_error(image_path, format!("not a readable image: {e}")))?;
    let (photo_w, photo_h) = (decoded.width(), decoded.height());
    let has_alpha_channel = decoded.color().has_alpha();
    let (decoded, to_photo) = reduced(decoded);
    let rgba = decoded.to_rgba8();
    drop(decoded);
    let (w, h) = rgba.dimensions();
    if photo_w < MIN_SIDE || photo_h < MIN_SIDE {
        return Err(input_error(
            image_path,
            format!("{photo_w}×{photo_h} is too small (at least {MIN_SIDE}×{MIN_SIDE})"),
        ));
    }
    let has_alpha = has_alpha_channel && rgba.pixels().any(|p| p[3] < 250);
    let (mask, source) = if let Some(mask_path) = &opts.mask {
        let m = open_bounded(mask_path)
            .map_err(|e| input_error(mask_path, format!("not a readable mask: {e}")))?;
        if (m.width(), m.height()) != (photo_w, photo_h) {
            return Err(input_error(
                mask_path,
                format!(
                    "the mask is {}×{}, the image {photo_w}×{photo_h}",
                    m.width(),
                    m.height()
                ),
            ));
        }
        (reduced(m).0.to_luma8(), MaskSource::File)
    } else if has_alpha {
        let m = GrayImage::from_fn(w, h, |x, y| Luma([rgba.get_pixel(x, y)[3]]));
        (m, MaskSource::Alpha)
    } else {
        match &opts.segmenter {
            Segmenter::Isnet { weights, device } => {
                let alpha = IsNet::load(weights, device)?.alpha(&rgba);
                let object = alpha.pixels().filter(|p| p[0] >= 128).count();
                if object as f64 > 0.98 * f64::from(w * h) {
                    return Err(input_error(
                        image_path,
                        "IS-Net found no background around the object (is the image all object?): give --mask or an image with alpha",
                    ));
                }
                (alpha, MaskSource::Isnet)
            }
            Segmenter::Classical => (
                background_model(&rgba, image_path)?,
                MaskSource::BackgroundModel,
            ),
            Segmenter::None => (
                GrayImage::from_pixel(w, h, Luma([255])),
                MaskSource::WholeImage,
            ),
        }
    };
    let (x0, y0, x1, y1) = bounds(&mask).ok_or_else(|| {
        input_error(
            image_path,
            "the object mask is empty (fully transparent or no object found)",
        )
    })?;

    // The square around the object's box, so the box's longer side is `fill` of it.
    let side = ((x1 - x0 + 1).max(y1 - y0 + 1) as f32 / opts.fill.clamp(0.1, 1.0)).ceil() as i64;
    let cx = (x0 + x1 + 1) as f32 / 2.0;
    let cy = (y0 + y1 + 1) as f32 / 2.0;
    let ox = (cx - side as f32 / 2.0).round() as i64;
    let oy = (cy - side as f32 / 2.0).round() as i64;
    let mut canvas = RgbaImage::new(side as u32, side as u32);
    for (x, y, p) in rgba.enumerate_pixels() {
        let (tx, ty) = (i64::from(x) - ox, i64::from(y) - oy);
        if tx >= 0 && ty >= 0 && tx < side && ty < side {
            let a = mask.get_pixel(x, y)[0];
            // Premultiplied-style: transparent pixels take no colour into the resampling.
            let c = if a == 0 {
                [0, 0, 0, 0]
            } else {
                [p[0], p[1], p[2], a]
            };
            canvas.put_pixel(tx as u32, ty as u32, Rgba(c));
        }
    }
    let resized = imageops::resize(&canvas, opts.size, opts.size, FilterType::Triangle);
    let white = RgbaImage::from_fn(opts.size, opts.size, |x, y| {
        let p = resized.get_pixel(x, y);
        let a = f32::from(p[3]) / 255.0;
        let c = |v: u8| (f32::from(v) * a + 255.0 * (1.0 - a)).round() as u8;
        Rgba([c(p[0]), c(p[1]), c(p[2]), 255])
    });
    Ok(Prepared {
        mask,
        rgba: resized,
        white,
        mask_source: source,
        crop: Crop {
            left: (ox as f64 * to_photo).round() as i64,
            top: (oy as f64 * to_photo).round() as i64,
            side: (side as f64 * to_photo).round() as u32,
            width: photo_w,
            height: photo_h,
        },
    })
}

/// The box of mask values above half, inclusive.
fn bounds(mask: &GrayImage) -> Option<(u32, u32, u32, u32)> {
    let mut b: Option<(u32, u32, u32, u32)> = None;
    for (x, y, p) in mask.enumerate_pixels() {
        if p[0] >= 128 {
            b = Some(match b {
                None => (x, y, x, y),
                Some((x0, y0, x1, y1)) => (x0.min(x), y0.min(y), x1.max(x), y1.max(y)),
            });
        }
    }
    b
}

fn median(mut v: Vec<f32>) -> f32 {
    v.sort_by(f32::total_cmp);
    v[v.len() / 2]
}

/// The object's mask by the background model (white = object). See the module documentation for
/// what it can and cannot separate. `path` is only named in errors.
pub fn background_model(img: &RgbaImage, path: &Path) -> Result<GrayImage, PrepareError> {
    let (w, h) = img.dimensions();
    let band = (w.min(h) / 50).max(1);
    let border: Vec<[f32; 3]> = img
        .enumerate_pixels()
        .filter(|(x, y, _)| *x < band || *y < band || *x >= w - band || *y >= h - band)
        .map(|(_, _, p)| [0, 1, 2].map(|k| f32::from(p[k])))
        .collect();
    let bg: [f32; 3] = [0, 1, 2].map(|k| median(border.iter().map(|p| p[k]).collect()));
    let dist = |p: &Rgba<u8>| {
        (0..3)
            .map(|k| (f32::from(p[k]) - bg[k]).powi(2))
            .sum::<f32>()
            .sqrt()
    };
    // Tolerance from the border's own spread (median distance to the median colour), within
    // 24..60 levels: enough for sensor noise and JPEG ringing, not enough to eat an object.
    let spread = median(
        border
            .iter()
            .map(|p| {
                ((p[0] - bg[0]).powi(2) + (p[1] - bg[1]).powi(2) + (p[2] - bg[2]).powi(2)).sqrt()
            })
            .collect(),
    );
    let tolerance = (4.0 * spread).clamp(24.0, 60.0);
    let plain = border
        .iter()
        .filter(|p| {
            ((p[0] - bg[0]).powi(2) + (p[1] - bg[1]).powi(2) + (p[2] - bg[2]).powi(2)).sqrt()
                <= tolerance
        })
        .count();
    if (plain as f64) < 0.5 * border.len() as f64 {
        return Err(input_error(
            path,
            "no plain background around the object (is the image all object?): give --mask or an image with alpha",
        ));
    }

    let idx = |x: u32, y: u32| (y * w + x) as usize;
    let mut background = vec![false; (w * h) as usize];
    let mut queue = VecDeque::new();
    for x in 0..w {
        for y in [0, h - 1] {
            queue.push_back((x, y));
        }
    }
    for y in 0..h {
        for x in [0, w - 1] {
            queue.push_back((x, y));
        }
    }
    while let Some((x, y)) = queue.pop_front() {
        if background[idx(x, y)] || dist(img.get_pixel(x, y)) > tolerance {
            continue;
        }
        background[idx(x, y)] = true;
        if x > 0 {
            queue.push_back((x - 1, y));
        }
        if y > 0 {
            queue.push_back((x, y - 1));
        }
        if x + 1 < w {
            queue.push_back((x + 1, y));
        }
        if y + 1 < h {
            queue.push_back((x, y + 1));
        }
    }
    let found = background.iter().filter(|&&b| b).count();
    if (found as f64) < 0.01 * f64::from(w * h) {
        return Err(input_error(
            path,
            "no background found around the object (is the image all object?): give --mask or an image with alpha",
        ));
    }
    // The largest 8-connected object component; holes are object already (the fill never
    // reached them from the border).
    let mut label = vec![0u32; (w * h) as usize];
    let (mut best, mut best_size, mut next) = (0u32, 0usize, 1u32);
    for start in 0..(w * h) {
        let s = start as usize;
        if background[s] || label[s] != 0 {
            continue;
        }
        let mut size = 0;
        label[s] = next;
        queue.push_back((start % w, start / w));
        while let Some((x, y)) = queue.pop_front() {
            size += 1;
            for dy in -1i64..=1 {
                for dx in -1i64..=1 {
                    let (nx, ny) = (i64::from(x) + dx, i64::from(y) + dy);
                    if nx < 0 || ny < 0 || nx >= i64::from(w) || ny >= i64::from(h) {
                        continue;
                    }
                    let n = idx(nx as u32, ny as u32);
                    if !background[n] && label[n] == 0 {
                        label[n] = next;
                        queue.push_back((nx as u32, ny as u32));
                    }
                }
            }
        }
        if size > best_size {
            (best, best_size) = (next, size);
        }
        next += 1;
    }
    Ok(GrayImage::from_fn(w, h, |x, y| {
        Luma([if best != 0 && label[idx(x, y)] == best {
            255
        } else {
            0
        }])
    }))
}

#[cfg(test)]
mod tests {
    use orbitmesh_render::OrbitView;
    use orbitmesh_render::camera::Intrinsics;

    use super::*;

    #[test]
    fn a_request_chooses_isnet_only_where_installed_and_asks_for_a_device_only_then() {
        let weights = PathBuf::from("isnet.safetensors");
        let no_device = || -> Result<Device, ()> { panic!("no device needed") };
        let chosen = |request: SegmenterRequest, installed: Option<PathBuf>| {
            request
                .choose(installed, no_device)
                .unwrap()
                .map(|c| (c.segmenter.name(), c.fell_back))
        };
        assert_eq!(
            chosen(SegmenterRequest::Auto, None),
            Some(("classical", true))
        );
        assert_eq!(chosen(SegmenterRequest::Isnet, None), None);
        for installed in [None, Some(weights.clone())] {
            assert_eq!(
                chosen(SegmenterRequest::Classical, installed.clone()),
                Some(("classical", false))
            );
            assert_eq!(
                chosen(SegmenterRequest::None, installed),
                Some(("none", false))
            );
        }
        for request in [SegmenterRequest::Auto, SegmenterRequest::Isnet] {
            let mut asked = false;
            let choice = request
                .choose(Some(weights.clone()), || -> Result<Device, ()> {
                    asked = true;
                    Ok(Device::default())
                })
                .unwrap()
                .unwrap();
            assert!(asked && !choice.fell_back);
            assert!(
                matches!(choice.segmenter, Segmenter::Isnet { weights: w, .. } if w == weights)
            );
        }
        // The request's spelling in `serve`'s options.
        let request: SegmenterRequest = serde_json::from_str("\"classical\"").unwrap();
        assert_eq!(request, SegmenterRequest::Classical);
    }

    /// A red disc of radius `r` at (cx, cy) on a grey background, with a speck of noise.
    fn photo(w: u32, h: u32, cx: f32, cy: f32, r: f32) -> RgbaImage {
        RgbaImage::from_fn(w, h, |x, y| {
            let d = ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)).sqrt();
            if d < r {
                Rgba([200, 30, 30, 255])
            } else if (x, y) == (3, h / 2) {
                Rgba([0, 0, 0, 255])
            } else {
                Rgba([120 + (x % 3) as u8, 120, 118, 255])
            }
        })
    }

    fn save(dir: &Path, name: &str, img: &RgbaImage) -> PathBuf {
        let p = dir.join(name);
        img.save(&p).unwrap();
        p
    }

    #[test]
    fn a_disc_on_grey_is_centred_and_fills_85_percent() {
        let dir = tempfile::tempdir().unwrap();
        // JPEG has no alpha: the background model must find the disc.
        let p = dir.path().join("disc.jpg");
        image::DynamicImage::ImageRgba8(photo(300, 200, 90.0, 120.0, 50.0))
            .to_rgb8()
            .save(&p)
            .unwrap();
        let out = prepare(&p, &PrepareOptions::default()).unwrap();
        assert_eq!(out.mask_source, MaskSource::BackgroundModel);
        assert_eq!(out.rgba.dimensions(), (576, 576));
        let mask = GrayImage::from_fn(576, 576, |x, y| Luma([out.rgba.get_pixel(x, y)[3]]));
        let (x0, y0, x1, y1) = bounds(&mask).unwrap();
        // JPEG ringing widens the mask by a pixel or two of the source; the longer side fills 85%.
        let side = (x1 - x0 + 1).max(y1 - y0 + 1) as f32;
        assert!((side / 576.0 - 0.85).abs() < 0.02, "object spans {side} px");
        let centre = ((x0 + x1) as f32 / 2.0, (y0 + y1) as f32 / 2.0);
        assert!(
            (centre.0 - 287.5).abs() < 3.0 && (centre.1 - 287.5).abs() < 3.0,
            "{centre:?}"
        );
        // White where there is no object, red in the middle.
        assert_eq!(out.white.get_pixel(5, 5).0, [255, 255, 255, 255]);
        let mid = out.white.get_pixel(288, 288);
        assert!(mid[0] > 150 && mid[1] < 80, "{mid:?}");
    }

    #[test]
    fn a_photo_over_the_working_side_prepares_as_its_reduced_copy() {
        let dir = tempfile::tempdir().unwrap();
        // Twice the working side across: prepare works on it halved, the crop is in its pixels.
        let (w, h) = (2 * WORK_SIDE, 1000);
        let big = photo(w, h, 2000.0, 500.0, 300.0);
        let small = imageops::resize(&big, WORK_SIDE, h / 2, FilterType::Triangle);
        let big_out = prepare(
            &save(dir.path(), "big.png", &big),
            &PrepareOptions::default(),
        );
        let small_out = prepare(
            &save(dir.path(), "small.png", &small),
            &PrepareOptions::default(),
        );
        let (big_out, small_out) = (big_out.unwrap(), small_out.unwrap());
        assert_eq!((big_out.crop.width, big_out.crop.height), (w, h));
        let c = small_out.crop;
        let doubled = [2 * c.left, 2 * c.top, 2 * i64::from(c.side)];
        let crop = big_out.crop;
        for (got, want) in [crop.left, crop.top, i64::from(crop.side)]
            .iter()
            .zip(doubled)
        {
            assert!((got - want).abs() <= 2, "{crop:?} against {c:?} doubled");
        }
        let diff: f64 = big_out
            .white
            .pixels()
            .zip(small_out.white.pixels())
            .map(|(a, b)| f64::from(a[0].abs_diff(b[0])))
            .sum::<f64>()
            / f64::from(576 * 576);
        assert!(diff < 2.0, "mean difference {diff} levels");
    }

    #[test]
    fn the_photo_frame_puts_the_prepared_view_back_where_the_photo_shows_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut img = photo(400, 300, 290.0, 110.0, 40.0);
        for p in img.pixels_mut() {
            if p[0] != 200 {
                p[3] = 0;
            }
        }
        let path = save(dir.path(), "off-centre.png", &img);
        let crop = prepare(&path, &PrepareOptions::default()).unwrap().crop;
        assert!(crop.left > 200 && crop.top < 100, "{crop:?}");
        let view = OrbitView {
            elevation_deg: 10.0,
            azimuth_deg: 30.0,
            radius: 2.0,
        };
        let prepared = view.camera(Intrinsics::from_fov(33.8, 576, 576));
        let taken = view.camera(Intrinsics::from_fov(33.8, 400, 300));
        let to_photo = crop.to_photo_frame(&prepared);
        let back = prepared
            .camera_to_world
            .fixed_view::<3, 1>(0, 2)
            .into_owned();
        for (x, y) in [(288.0, 288.0), (10.0, 500.0), (560.0, 40.0)] {
            // The point the prepared pixel shows on the plane through the origin.
            let (o, dir) = prepared.ray(x, y);
            let p = o - dir * (o.dot(&back) / dir.dot(&back));
            let q = to_photo.transform_point(&p.into());
            let (px, py, _) = taken.project(q.coords);
            let scale = f64::from(crop.side) / 576.0;
            let want = (crop.left as f64 + x * scale, crop.top as f64 + y * scale);
            assert!(
                (px - want.0).abs() < 1e-6 && (py - want.1).abs() < 1e-6,
                "prepared ({x}, {y}) lands at ({px}, {py}) in the photo, not {want:?}"
            );
        }
    }

    #[test]
    fn alpha_and_mask_files_are_used_as_given() {
        let dir = tempfile::tempdir().unwrap();
        let mut img = photo(64, 64, 32.0, 32.0, 10.0);
        for p in img.pixels_mut() {
            if p[0] != 200 {
                p[3] = 0;
            }
        }
        let p = save(dir.path(), "a.png", &img);
        let from_png = prepare(&p, &PrepareOptions::default()).unwrap();
        assert_eq!(from_png.mask_source, MaskSource::Alpha);
        // WebP (lossless, as the image crate writes it) keeps its alpha the same way.
        let webp = save(dir.path(), "a.webp", &img);
        let from_webp = prepare(&webp, &PrepareOptions::default()).unwrap();
        assert_eq!(from_webp.mask_source, MaskSource::Alpha);
        assert_eq!(from_webp.rgba, from_png.rgba);
        let mask = GrayImage::from_fn(64, 64, |x, _| Luma([if x < 32 { 255 } else { 0 }]));
        let mp = dir.path().join("m.png");
        mask.save(&mp).unwrap();
        let opts = PrepareOptions {
            mask: Some(mp),
            size: 64,
            ..Default::default()
        };
        let out = prepare(&p, &opts).unwrap();
        assert_eq!(out.mask_source, MaskSource::File);
    }

    #[test]
    fn bad_images_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let not_image = d.join("x.png");
        std::fs::write(&not_image, b"hello").unwrap();
        let clear = save(d, "clear.png", &RgbaImage::new(32, 32));
        let tiny = save(
            d,
            "tiny.png",
            &RgbaImage::from_pixel(1, 1, Rgba([1, 2, 3, 255])),
        );
        let all_object = save(
            d,
            "all.png",
            &RgbaImage::from_fn(40, 40, |x, y| {
                let v = (x * 7919 + y * 104_729) % 251;
                Rgba([v as u8, (v * 3 % 256) as u8, (255 - v) as u8, 255])
            }),
        );
        // A header declaring 10,000 × 5,000 pixels and no data: refused before decoding.
        let huge = d.join("huge.png");
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend(10_000u32.to_be_bytes());
        ihdr.extend(5_000u32.to_be_bytes());
        ihdr.extend([8, 2, 0, 0, 0]);
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        for chunk in [&ihdr[..], b"IDAT", b"IEND"] {
            let mut crc = flate2::Crc::new();
            crc.update(chunk);
            png.extend((chunk.len() as u32 - 4).to_be_bytes());
            png.extend(chunk);
            png.extend(crc.sum().to_be_bytes());
        }
        std::fs::write(&huge, png).unwrap();
        for (p, problem) in [
            (not_image, "not a readable image"),
            (huge, "more than 40 megapixels"),
            (clear, "mask is empty"),
            (tiny, "too small"),
            (all_object, "background around the object"),
        ] {
            let e = prepare(&p, &PrepareOptions::default())
                .err()
                .unwrap()
                .to_string();
            assert!(
                e.contains(problem) && e.contains(&p.display().to_string()),
                "{e}"
            );
        }
    }
}
