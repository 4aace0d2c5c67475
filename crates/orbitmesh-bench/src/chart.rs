//! The bench's picture of per-object Chamfer: one horizontal bar per object, the paper's
//! reference figures as vertical lines, drawn with plotters.

use image::RgbImage;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::BenchError;

type Result<T> = std::result::Result<T, BenchError>;

/// A plotters error, saying which part of the chart it drew.
fn chart_error<E: std::fmt::Display>(part: &'static str) -> impl Fn(E) -> BenchError {
    move |e| BenchError::Chart(format!("{part}: {e}"))
}

const BAR: RGBColor = RGBColor(52, 101, 164);
const WIDTH: u32 = 900;

/// Chamfer distances by object (`None`: the object failed) beside `references` (label, value).
pub fn chamfer_chart(
    objects: &[(String, Option<f64>)],
    references: &[(&str, f64)],
) -> Result<RgbImage> {
    // plotters' ab_glyph text knows only the fonts registered with it; registering again replaces.
    register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| BenchError::Chart("the embedded DejaVu Sans font did not parse".into()))?;
    let n = objects.len().max(1);
    // plotters counts segments from the bottom; the first object goes on top.
    let slot = |i: usize| n - 1 - i;
    let height = 130 + 28 * n as u32;
    let x_max = objects
        .iter()
        .filter_map(|(_, c)| *c)
        .chain(references.iter().map(|(_, v)| *v))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-3)
        * 1.15;
    let mut pixels = vec![255u8; (WIDTH * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (WIDTH, height)).into_drawing_area();
        let (plot, legend) = root.split_vertically(height - 28);
        let label_width = objects
            .iter()
            .map(|(name, _)| name.chars().count() as u32 * 8 + 16)
            .max()
            .unwrap_or(60);
        let mut chart = ChartBuilder::on(&plot)
            .caption(
                "Chamfer distance per object (lower is better)",
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(label_width)
            .build_cartesian_2d(0.0..x_max, (0..n - 1).into_segmented())
            .map_err(chart_error("plot"))?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(s) if *s < n => {
                    objects.get(slot(*s)).map_or(String::new(), |o| o.0.clone())
                }
                _ => String::new(),
            })
            .x_desc("Chamfer distance (gso protocol)")
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(chart_error("axes"))?;
        chart
            .draw_series(objects.iter().enumerate().filter_map(|(i, (_, c))| {
                let c = c.filter(|c| c.is_finite())?;
                let mut bar = Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(slot(i))),
                        (c, SegmentValue::Exact(slot(i) + 1)),
                    ],
                    BAR.filled(),
                );
                bar.set_margin(5, 5, 0, 0);
                Some(bar)
            }))
            .map_err(chart_error("bars"))?;
        chart
            .draw_series(objects.iter().enumerate().map(|(i, (_, c))| {
                let text = match c {
                    Some(c) if c.is_finite() => format!("{c:.4}"),
                    _ => "failed".to_string(),
                };
                let x = c.filter(|c| c.is_finite()).unwrap_or(0.0);
                Text::new(
                    text,
                    (x, SegmentValue::CenterOf(slot(i))),
                    ("sans-serif", 12),
                )
            }))
            .map_err(chart_error("values"))?;
        // The references' key goes under the plot, where it cannot hide a bar.
        let mut x = 60;
        for (k, (label, value)) in references.iter().enumerate() {
            let colour = Palette99::pick(k + 1).to_rgba();
            let line = [
                (*value, SegmentValue::Exact(0)),
                (*value, SegmentValue::Exact(n)),
            ];
            chart
                .draw_series(LineSeries::new(line, colour.stroke_width(2)))
                .map_err(chart_error("references"))?;
            let key = format!("{label} {value}");
            legend
                .draw(&PathElement::new(
                    [(x, 12), (x + 18, 12)],
                    colour.stroke_width(3),
                ))
                .and_then(|_| legend.draw(&Text::new(key.clone(), (x + 24, 5), ("sans-serif", 13))))
                .map_err(chart_error("key"))?;
            x += 40 + 8 * key.chars().count() as i32;
        }
        root.present().map_err(chart_error("plot"))?;
    }
    RgbImage::from_raw(WIDTH, height, pixels).ok_or_else(|| BenchError::Chart("buffer size".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_bar(img: &RgbImage, x: u32, y: u32) -> bool {
        img.get_pixel(x, y).0 == [BAR.0, BAR.1, BAR.2]
    }

    /// Pixels of the bar colour along the middle of the `i`-th band from the top.
    fn bar_length(img: &RgbImage, objects: usize, i: usize) -> usize {
        // The bands split the bars' vertical extent evenly (first and last band hold a bar here).
        let rows: Vec<u32> = (0..img.height())
            .filter(|&y| (0..img.width()).any(|x| is_bar(img, x, y)))
            .collect();
        let (top, bottom) = (rows[0] as f64, *rows.last().unwrap() as f64);
        let y = top + (bottom - top) * (i as f64 + 0.5) / objects as f64;
        (0..img.width())
            .filter(|&x| is_bar(img, x, y as u32))
            .count()
    }

    #[test]
    fn bars_are_proportional_to_chamfer_and_failures_have_none() {
        let objects = vec![
            ("a".to_string(), Some(0.01)),
            ("b".to_string(), Some(0.04)),
            ("c".to_string(), None),
            ("d".to_string(), Some(0.02)),
        ];
        let img = chamfer_chart(&objects, &[("SV3D_p", 0.024)]).unwrap();
        assert_eq!(img.width(), WIDTH);
        let lengths: Vec<usize> = (0..4).map(|i| bar_length(&img, 4, i)).collect();
        assert!(lengths[1] > 100, "{lengths:?}");
        assert_eq!(lengths[2], 0, "a failed object has no bar: {lengths:?}");
        for (i, c) in [(0, 0.01), (3, 0.02)] {
            let expected = lengths[1] as f64 * c / 0.04;
            assert!(
                (lengths[i] as f64 - expected).abs() <= 3.0,
                "bar {i}: {} pixels, {expected:.1} expected ({lengths:?})",
                lengths[i]
            );
        }
        // Text was drawn: some pixels are dark grey or black (labels, axis), not only bars and white.
        let dark = img.pixels().filter(|p| p.0.iter().all(|&c| c < 60)).count();
        assert!(dark > 500, "{dark} dark pixels: no labels drawn?");
    }

    #[test]
    fn one_object_or_none_still_draws() {
        let one = chamfer_chart(&[("only".to_string(), Some(0.03))], &[]).unwrap();
        assert!(bar_length(&one, 1, 0) > 100);
        let none = chamfer_chart(&[], &[("SV3D_p", 0.024)]).unwrap();
        assert!(!none.pixels().any(|p| p.0 == [BAR.0, BAR.1, BAR.2]));
    }
}
