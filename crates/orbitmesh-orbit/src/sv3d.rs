//! SV3D as an orbit generator: the model of `orbitmesh-sv3d` behind [`OrbitGenerator`], the
//! prepared image on white in, the orbit's frames out as images with alpha.

use std::path::Path;

use burn::tensor::{Device, FloatDType};
use image::imageops::FilterType;
use image::{DynamicImage, RgbImage, RgbaImage};
use orbitmesh_render::camera::Intrinsics;
use orbitmesh_render::{OrbitView, Rasterizer};
use orbitmesh_segment::background_model;
use orbitmesh_sv3d::{SampleOptions, Sv3d, Sv3dError, Variant, on_white, sv3d_cameras};

use crate::generator::{GeneratedOrbit, OrbitError, OrbitGenerator, OrbitProgress};

/// SV3D as an [`OrbitGenerator`]: the prepared image on white in, the orbit's frames out, with
/// alpha from the white background they are generated on.
pub struct Sv3dGenerator {
    model: Sv3d,
    options: SampleOptions,
}

impl Sv3dGenerator {
    pub fn new(model: Sv3d, options: SampleOptions) -> Self {
        Self { model, options }
    }

    pub fn load(
        path: &Path,
        device: &Device,
        dtype: FloatDType,
        options: SampleOptions,
    ) -> Result<Self, Sv3dError> {
        Ok(Self::new(Sv3d::load(path, device, dtype)?, options))
    }
}

impl OrbitGenerator for Sv3dGenerator {
    fn name(&self) -> &'static str {
        self.model.variant.name()
    }

    fn describe(&self) -> &'static str {
        match self.model.variant {
            Variant::P => "sv3d_p: SV3D's video diffusion model (Voleti et al. 2024), with cameras",
            Variant::U => "sv3d_u: SV3D's video diffusion model (Voleti et al. 2024), fixed orbit",
        }
    }

    fn generate(
        &self,
        prepared: &RgbaImage,
        input_view: OrbitView,
        views: &[OrbitView],
        intrinsics: Intrinsics,
        _rasterizer: &Rasterizer,
        progress: &mut dyn FnMut(OrbitProgress),
    ) -> Result<GeneratedOrbit, OrbitError> {
        let (cameras, order) = sv3d_cameras(self.model.variant, input_view, views)?;
        let image = on_white(prepared, self.options.resolution, self.model.device());
        let side = self.options.resolution as usize;
        let total = self.model.parts(cameras.len(), side, &self.options);
        let mut done = 0;
        let frames = self
            .model
            .generate(image, &cameras, &self.options, |part, seconds| {
                done += 1;
                progress(OrbitProgress {
                    part: part.to_string(),
                    done,
                    total,
                    seconds,
                });
            })?;
        let [n, _, h, w] = frames.dims();
        let values: Vec<f32> = frames
            .into_data()
            .try_to_vec()
            .map_err(|e| OrbitError::Input(format!("SV3D's frames: {e:?}")))?;
        let plane = h * w;
        let mut out = vec![RgbaImage::new(1, 1); n];
        let mut opaque = Vec::new();
        for (k, &view) in order.iter().enumerate() {
            let rgb = RgbImage::from_fn(w as u32, h as u32, |x, y| {
                let at = |c: usize| values[(k * 3 + c) * plane + y as usize * w + x as usize];
                image::Rgb([0, 1, 2].map(|c| (at(c) * 255.0).round() as u8))
            });
            let (fw, fh) = (intrinsics.width, intrinsics.height);
            let rgb = if (fw, fh) == (w as u32, h as u32) {
                rgb
            } else {
                image::imageops::resize(&rgb, fw, fh, FilterType::Lanczos3)
            };
            let mut rgba = DynamicImage::ImageRgb8(rgb).into_rgba8();
            // A frame with no white around the object (weights that are not SV3D's trained
            // ones) keeps every pixel: the frame is still what the model made.
            match background_model(&rgba, Path::new("SV3D frame")) {
                Ok(mask) => {
                    for (p, m) in rgba.pixels_mut().zip(mask.pixels()) {
                        p[3] = m[0];
                    }
                }
                Err(_) => opaque.push(view),
            }
            out[view] = rgba;
        }
        let mut warnings = Vec::new();
        if !opaque.is_empty() {
            opaque.sort_unstable();
            warnings.push(format!(
                "{} of {n} SV3D frames have no white background around the object (frames {opaque:?}): \
                 kept opaque; trained SV3D weights make white backgrounds",
                opaque.len()
            ));
        }
        Ok(GeneratedOrbit {
            frames: out,
            warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use orbitmesh_render::camera::{self, SV3D_FOV_DEG, SV3D_FRAMES, SV3D_RADIUS};
    use orbitmesh_sv3d::fixture::fixture;

    use super::*;

    #[test]
    fn the_tiny_model_makes_an_orbit_with_the_input_view_kept() {
        let Some(fx) = fixture(&Device::flex()) else {
            return;
        };
        let model = Sv3d::from_weights(&fx.weights, fx.config.clone(), Variant::P).unwrap();
        let options = SampleOptions {
            steps: 2,
            resolution: 64,
            ..Default::default()
        };
        let generator = Sv3dGenerator::new(model, options);
        // An opaque disc on transparent: the input view must come back as it went in, on white.
        let prepared = RgbaImage::from_fn(64, 64, |x, y| {
            let d = ((x as f32 - 31.5).powi(2) + (y as f32 - 31.5).powi(2)).sqrt();
            if d < 20.0 {
                image::Rgba([200, 40, 30, 255])
            } else {
                image::Rgba([0, 0, 0, 0])
            }
        });
        let input = OrbitView {
            elevation_deg: 10.0,
            azimuth_deg: 0.0,
            radius: SV3D_RADIUS,
        };
        let views = camera::orbit(&camera::even_azimuths(SV3D_FRAMES), 10.0, SV3D_RADIUS);
        let k = Intrinsics::from_fov(SV3D_FOV_DEG, 64, 64);
        let frames = generator
            .generate(&prepared, input, &views, k, &Rasterizer::Cpu, &mut |_| {})
            .unwrap()
            .frames;
        assert_eq!(frames.len(), SV3D_FRAMES);
        assert!(frames.iter().all(|f| f.dimensions() == (64, 64)));
        let centre = frames[0].get_pixel(32, 32);
        let corner = frames[0].get_pixel(2, 2);
        assert!(
            centre[0].abs_diff(200) <= 2 && centre[1].abs_diff(40) <= 2,
            "{centre:?}"
        );
        assert_eq!(
            corner[3], 0,
            "the white around the input view is background: {corner:?}"
        );
        assert!(frames[5] != frames[0], "generated frames are not the input");

        let no_input = &views[1..];
        let err = generator
            .generate(&prepared, input, no_input, k, &Rasterizer::Cpu, &mut |_| {})
            .unwrap_err();
        assert!(err.to_string().contains("input view"), "{err}");
    }
}
