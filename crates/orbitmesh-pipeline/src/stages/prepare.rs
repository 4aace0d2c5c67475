//! The prepare stage: a photo to the orbit generator's input frame.

use std::path::Path;

use image::DynamicImage;
use nalgebra::Similarity3;
use orbitmesh_render::camera::{Intrinsics, OrbitView, SV3D_FOV_DEG, SV3D_RADIUS};
use orbitmesh_segment::{Crop, MaskSource, PrepareOptions, prepare};
use serde_json::Value;

use crate::error::{PipelineError, Result};
use crate::event::{Event, OnEvent, Stage};
use crate::output::{encode_png, make_folder, save, save_json};

/// The square of the photo the prepared image shows, in the prepare stage's folder.
pub const CROP_FILE: &str = "crop.json";

/// Prepares `image` into `dir` (made only once the input has passed): prepared.png,
/// prepared_white.png, mask.png and crop.json (the square of the photo it shows). Warns through
/// `on_event` where the classical model stood in for IS-Net (`fell_back`: IS-Net was wanted but
/// is not installed). Returns what the stage record keeps.
pub fn prepare_into(
    image: &Path,
    opts: &PrepareOptions,
    fell_back: bool,
    dir: &Path,
    on_event: OnEvent<'_>,
) -> Result<Value> {
    // Seconds at most, so the input is checked before the output folder is made.
    let prepared = prepare(image, opts)?;
    make_folder(dir)?;
    save(&dir.join("prepared.png"), &encode_png(&prepared.rgba)?)?;
    save(
        &dir.join("prepared_white.png"),
        &encode_png(&prepared.white)?,
    )?;
    save(
        &dir.join("mask.png"),
        &encode_png(&DynamicImage::ImageLuma8(prepared.mask).to_rgba8())?,
    )?;
    save_json(&dir.join(CROP_FILE), &prepared.crop)?;
    let source = match prepared.mask_source {
        MaskSource::Alpha => "the image's alpha",
        MaskSource::File => "the mask file",
        MaskSource::Isnet => "the IS-Net segmenter",
        MaskSource::BackgroundModel => "the classical background model",
        MaskSource::WholeImage => "the whole image (no segmenter)",
    };
    if fell_back && prepared.mask_source == MaskSource::BackgroundModel {
        on_event(&Event::Warning {
            stage: Some(Stage::Prepare),
            message: "IS-Net is not installed, so the classical background model found the \
                      object (plain backgrounds only); `orbitmesh models fetch isnet` installs the \
                      learned one"
                .to_string(),
        });
    }
    Ok(serde_json::json!({
        "mask_from": source,
        "segmenter": opts.segmenter.name(),
        "size": opts.size,
        "fill": opts.fill,
    }))
}

/// Takes a mesh made from the prepared image in `dir` (seen from SV3D's camera at `elevation`,
/// azimuth 0) to where that camera would see the object as the photo shows it
/// ([`Crop::to_photo_frame`]). For a photo rendered that way from a normalised scan, as `bench`'s
/// conditioning views are, that is the scan's normalised frame.
pub fn photo_frame(dir: &Path, elevation_deg: f64) -> Result<Similarity3<f64>> {
    let path = dir.join(CROP_FILE);
    let bytes = std::fs::read(&path).map_err(PipelineError::io(&path, "cannot read"))?;
    let crop: Crop = serde_json::from_slice(&bytes)
        .map_err(|e| PipelineError::input(&path, format!("not a crop record ({e})")))?;
    let view = OrbitView {
        elevation_deg,
        azimuth_deg: 0.0,
        radius: SV3D_RADIUS,
    };
    // Any size does: only the field of view enters.
    Ok(crop.to_photo_frame(&view.camera(Intrinsics::from_fov(SV3D_FOV_DEG, 576, 576))))
}
