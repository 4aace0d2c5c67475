//! Writing pictures: PNG encoding and atomic saves.

use std::io::Cursor;
use std::path::Path;

use anyhow::Result;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ImageEncoder, RgbaImage};
use orbitmesh_geom::io::write_atomic;

/// RGBA PNG with fast compression: frames are many and large.
pub fn encode_png(img: &RgbaImage) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    PngEncoder::new_with_quality(
        Cursor::new(&mut bytes),
        CompressionType::Fast,
        FilterType::Adaptive,
    )
    .write_image(
        img,
        img.width(),
        img.height(),
        image::ExtendedColorType::Rgba8,
    )?;
    Ok(bytes)
}

/// Writes through a temporary file renamed into place.
pub fn save(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |w| std::io::Write::write_all(w, bytes))?;
    Ok(())
}
