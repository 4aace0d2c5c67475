//! An uploaded photo, checked before a job is made of it: its name, its format from its bytes,
//! its size from its header (before any pixel is decoded), then every pixel decoded within a
//! memory limit.

use std::io::Cursor;

use image::{ImageFormat, ImageReader, Limits};

/// The longest side a photo may have: SV3D sees 576², so more only costs memory.
pub const MAX_SIDE: u32 = 8192;
/// The most memory decoding one photo may take (an 8192² RGBA image is 256 MiB).
const MAX_DECODE_BYTES: u64 = 512 << 20;

/// A problem with an upload, said as the API's error says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    /// Not a PNG, JPEG or WebP image.
    Unsupported(String),
    /// A name, size or content the server does not take.
    Invalid(String),
}

/// Checks the name the upload came with: a photo's name, never a path (the name is only shown:
/// the photo is stored as `input.<ext>`, but a client sending `../` is either broken or
/// hostile, and is told so).
pub fn check_file_name(name: &str) -> Result<(), Rejected> {
    if name.contains(['/', '\\', '\0']) || name.starts_with("..") {
        return Err(Rejected::Invalid(format!(
            "image: the file name `{}` names a folder; send a file name only",
            name.escape_default()
        )));
    }
    Ok(())
}

/// Checks the photo's bytes and returns its format: PNG, JPEG or WebP, at most [`MAX_SIDE`]
/// pixels a side by its header, and decodable whole within [`MAX_DECODE_BYTES`].
pub fn check_image(bytes: &[u8]) -> Result<ImageFormat, Rejected> {
    if bytes.is_empty() {
        return Err(Rejected::Invalid("image: the file is empty".into()));
    }
    let format = image::guess_format(bytes)
        .ok()
        .filter(|f| matches!(f, ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP))
        .ok_or_else(|| Rejected::Unsupported("image: not a PNG, JPEG or WebP image".into()))?;
    let reader = || ImageReader::with_format(Cursor::new(bytes), format);
    let (width, height) = reader()
        .into_dimensions()
        .map_err(|e| Rejected::Invalid(format!("image: cannot read its header ({e})")))?;
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(Rejected::Invalid(format!(
            "image: {width}×{height} pixels; at most {MAX_SIDE} pixels a side"
        )));
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    let mut reader = reader();
    reader.limits(limits);
    reader
        .decode()
        .map_err(|e| Rejected::Invalid(format!("image: cannot decode it ({e})")))?;
    Ok(format)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use image::{Rgba, RgbaImage};

    fn message(rejected: Rejected) -> String {
        match rejected {
            Rejected::Unsupported(m) | Rejected::Invalid(m) => m,
        }
    }

    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut bytes = Vec::new();
        RgbaImage::from_pixel(width, height, Rgba([200, 10, 10, 255]))
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .unwrap();
        bytes
    }

    /// A PNG whose header claims `side`² pixels (with a correct CRC), and no pixel data.
    pub(crate) fn png_header_claiming(side: u32) -> Vec<u8> {
        let mut bytes = png(1, 1);
        // IHDR's width and height at bytes 16..24, its CRC (over type and data) at 29..33.
        bytes[16..20].copy_from_slice(&side.to_be_bytes());
        bytes[20..24].copy_from_slice(&side.to_be_bytes());
        let crc = crc32(&bytes[12..29]);
        bytes[29..33].copy_from_slice(&crc.to_be_bytes());
        bytes
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn a_photo_passes_with_its_format() {
        assert_eq!(check_image(&png(32, 16)).unwrap(), ImageFormat::Png);
    }

    #[test]
    fn bad_photos_are_named() {
        let err = |bytes: &[u8]| message(check_image(bytes).unwrap_err());
        assert!(err(b"").contains("empty"));
        assert!(err(b"hello, not an image").contains("not a PNG"));
        let huge = err(&png_header_claiming(60_000));
        assert!(huge.contains("60000×60000"), "{huge}");
        // A header within the limits and its pixel data cut off.
        let mut truncated = png(64, 64);
        truncated.truncate(truncated.len() - 20);
        assert!(err(&truncated).contains("cannot decode"));
    }

    #[test]
    fn file_names_are_names_only() {
        assert!(check_file_name("bunny.png").is_ok());
        assert!(check_file_name("").is_ok());
        for bad in ["../evil.png", "..", "a/b.png", "..\\x.png", "/etc/passwd"] {
            let err = message(check_file_name(bad).unwrap_err());
            assert!(err.contains("file name"), "{err}");
        }
    }
}
