//! A labelled contact sheet: every frame of an orbit as a thumbnail on one picture.

use font8x8::UnicodeFonts;
use image::imageops::{self, FilterType};
use image::{Rgba, RgbaImage};

const LABEL_SCALE: u32 = 2;
const LABEL_HEIGHT: u32 = 8 * LABEL_SCALE + 6;

fn draw_text(img: &mut RgbaImage, x0: u32, y0: u32, text: &str) {
    for (i, ch) in text.chars().enumerate() {
        let glyph = font8x8::BASIC_FONTS.get(ch).unwrap_or([0; 8]);
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits >> col & 1 == 1 {
                    for dy in 0..LABEL_SCALE {
                        for dx in 0..LABEL_SCALE {
                            let x = x0 + (i as u32 * 8 + col) * LABEL_SCALE + dx;
                            let y = y0 + row as u32 * LABEL_SCALE + dy;
                            if x < img.width() && y < img.height() {
                                img.put_pixel(x, y, Rgba([20, 20, 20, 255]));
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Thumbnails `thumb` pixels wide on white, each labelled underneath, `columns` to a row (by
/// default a near-square grid).
pub fn contact_sheet(
    frames: &[(RgbaImage, String)],
    thumb: u32,
    columns: Option<u32>,
) -> RgbaImage {
    let n = frames.len().max(1) as u32;
    let cols = columns
        .unwrap_or_else(|| (n as f64).sqrt().ceil() as u32)
        .clamp(1, n);
    let rows = n.div_ceil(cols);
    let aspect = frames
        .first()
        .map_or(1.0, |(f, _)| f.height() as f64 / f.width().max(1) as f64);
    let th = ((thumb as f64) * aspect).round().max(1.0) as u32;
    let (cell_w, cell_h) = (thumb + 8, th + LABEL_HEIGHT + 8);
    let mut sheet = RgbaImage::from_pixel(cols * cell_w, rows * cell_h, Rgba([255; 4]));
    for (k, (frame, label)) in frames.iter().enumerate() {
        let (cx, cy) = (
            (k as u32 % cols) * cell_w + 4,
            (k as u32 / cols) * cell_h + 4,
        );
        let small = imageops::resize(frame, thumb, th, FilterType::Triangle);
        let mut on_white = RgbaImage::from_pixel(thumb, th, Rgba([255; 4]));
        imageops::overlay(&mut on_white, &small, 0, 0);
        imageops::replace(&mut sheet, &on_white, cx.into(), cy.into());
        draw_text(&mut sheet, cx, cy + th + 3, label);
    }
    sheet
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheet_places_every_frame_and_labels_it() {
        let red = RgbaImage::from_pixel(40, 40, Rgba([255, 0, 0, 255]));
        let frames: Vec<_> = (0..5).map(|k| (red.clone(), format!("{k}"))).collect();
        let sheet = contact_sheet(&frames, 32, None);
        // 3 columns, 2 rows.
        assert_eq!(sheet.width(), 3 * 40);
        assert_eq!(sheet.height(), 2 * (32 + LABEL_HEIGHT + 8));
        let reds = sheet.pixels().filter(|p| p.0 == [255, 0, 0, 255]).count();
        assert_eq!(reds, 5 * 32 * 32);
        let ink = sheet.pixels().filter(|p| p.0 == [20, 20, 20, 255]).count();
        assert!(ink > 0);
        let row = contact_sheet(&frames, 32, Some(5));
        assert_eq!((row.width(), row.height()), (5 * 40, 32 + LABEL_HEIGHT + 8));
    }
}
