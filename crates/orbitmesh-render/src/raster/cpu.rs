//! The CPU rasterizer: triangles binned into 32×32 tiles, tiles rasterized in parallel with edge
//! functions at pixel centres, the top-left fill rule and a depth test, as GPUs do. Vertices are
//! snapped to 1/256 pixel and edge functions evaluated in integers, as GPUs do too: only exact
//! arithmetic makes the fill rule give every pixel on a shared edge to exactly one triangle.

use rayon::prelude::*;

use super::{NEAR, ScreenVertex, VisibilityBuffer, project_vertices};
use crate::camera::Camera;
use crate::scene::Scene;

const TILE: usize = 32;
/// Sub-pixel precision of snapped vertices: 8 bits, as llvmpipe and most GPUs.
const SUBPIXEL: f64 = 256.0;
/// Triangles reaching further off-screen than this many pixels are skipped, which keeps the
/// integer edge functions far from overflow.
const GUARD_BAND: f64 = (1 << 22) as f64;

/// A band of TILE full-width rows of the output, which one thread owns.
struct Band<'a> {
    triangle: &'a mut [u32],
    bary: &'a mut [[f32; 2]],
    depth: &'a mut [f32],
    width: usize,
}

fn snap(v: &ScreenVertex) -> (i64, i64) {
    (
        (v.x * SUBPIXEL).round() as i64,
        (v.y * SUBPIXEL).round() as i64,
    )
}

/// The pixels whose centres the snapped triangle's bounding box holds, clipped to `lo..=hi`
/// (inclusive, per axis); `None` when empty.
fn pixel_range(p: &[(i64, i64); 3], lo: (usize, usize), hi: (usize, usize)) -> Option<[usize; 4]> {
    let step = SUBPIXEL as i64;
    let half = step / 2;
    let (min_x, max_x) = (p.iter().map(|p| p.0).min()?, p.iter().map(|p| p.0).max()?);
    let (min_y, max_y) = (p.iter().map(|p| p.1).min()?, p.iter().map(|p| p.1).max()?);
    // First centre i·step + half ≥ min, last ≤ max.
    let first = |m: i64| (m - half + step - 1).div_euclid(step);
    let last = |m: i64| (m - half).div_euclid(step);
    let x0 = first(min_x).max(lo.0 as i64);
    let y0 = first(min_y).max(lo.1 as i64);
    let x1 = last(max_x).min(hi.0 as i64);
    let y1 = last(max_y).min(hi.1 as i64);
    (x0 <= x1 && y0 <= y1).then_some([x0 as usize, y0 as usize, x1 as usize, y1 as usize])
}

/// Edge function: twice the signed area of the triangle (a, b, p), in sub-pixel units.
#[inline]
fn edge(a: (i64, i64), b: (i64, i64), p: (i64, i64)) -> i64 {
    (b.0 - a.0) * (p.1 - a.1) - (b.1 - a.1) * (p.0 - a.0)
}

pub fn rasterize_cpu(scene: &Scene, camera: &Camera) -> VisibilityBuffer {
    let (w, h) = (
        camera.intrinsics.width as usize,
        camera.intrinsics.height as usize,
    );
    let verts = project_vertices(scene, camera);
    let (tiles_x, tiles_y) = (w.div_ceil(TILE), h.div_ceil(TILE));
    let mut bins: Vec<Vec<u32>> = vec![Vec::new(); tiles_x * tiles_y];
    for (f, face) in scene.faces.iter().enumerate() {
        let v = face.map(|i| verts[i as usize]);
        // NaN fails every comparison, so test for the good case.
        let usable =
            |v: &ScreenVertex| v.depth > NEAR && v.x.abs() < GUARD_BAND && v.y.abs() < GUARD_BAND;
        if !v.iter().all(usable) {
            continue;
        }
        let Some([x0, y0, x1, y1]) = pixel_range(&v.map(|v| snap(&v)), (0, 0), (w - 1, h - 1))
        else {
            continue;
        };
        for ty in y0 / TILE..=y1 / TILE {
            for tx in x0 / TILE..=x1 / TILE {
                bins[ty * tiles_x + tx].push(f as u32);
            }
        }
    }

    // Bands of tile rows in parallel, each writing its own rows of the output: no per-tile
    // buffers and no copying. The depth test runs on the f32 depth, as a Depth32 GPU target does.
    let mut out = VisibilityBuffer::empty(w as u32, h as u32);
    let VisibilityBuffer {
        triangle,
        bary,
        depth,
        ..
    } = &mut out;
    triangle
        .par_chunks_mut(w * TILE)
        .zip(bary.par_chunks_mut(w * TILE))
        .zip(depth.par_chunks_mut(w * TILE))
        .enumerate()
        .for_each(|(ty, ((triangle, bary), depth))| {
            let th = triangle.len() / w;
            let mut band = Band {
                triangle,
                bary,
                depth,
                width: w,
            };
            for tx in 0..tiles_x {
                let (ox, oy) = (tx * TILE, ty * TILE);
                let tw = TILE.min(w - ox);
                for &f in &bins[ty * tiles_x + tx] {
                    let v = scene.faces[f as usize].map(|i| verts[i as usize]);
                    draw(&mut band, f, v, (ox, oy, tw, th));
                }
            }
        });
    out
}

/// Rasterizes one triangle into one tile of a band (`ox`, `oy`: the tile's origin in the image,
/// `tw`×`th` its size).
fn draw(
    band: &mut Band,
    f: u32,
    v: [ScreenVertex; 3],
    (ox, oy, tw, th): (usize, usize, usize, usize),
) {
    let p = v.map(|v| snap(&v));
    let area = edge(p[0], p[1], p[2]);
    if area == 0 {
        return;
    }
    // Both windings are drawn (scans are open, and back faces are real surface): normalise the
    // sign so inside means all edge functions positive.
    let s = area.signum();
    // Edge i is opposite vertex i.
    let edges = [(p[1], p[2]), (p[2], p[0]), (p[0], p[1])];
    // Per-pixel increments of each edge function, signed.
    let step_x = edges.map(|(a, b)| -(b.1 - a.1) * s * SUBPIXEL as i64);
    let step_y = edges.map(|(a, b)| (b.0 - a.0) * s * SUBPIXEL as i64);
    // Top-left rule: a pixel centre exactly on an edge belongs to the triangle if the edge is a
    // left edge (interior towards +x) or a top edge (horizontal, interior towards +y, y down).
    let top_left = [0, 1, 2].map(|i| step_x[i] > 0 || (step_x[i] == 0 && step_y[i] > 0));

    let Some([x0, y0, x1, y1]) = pixel_range(&p, (ox, oy), (ox + tw - 1, oy + th - 1)) else {
        return;
    };
    let inv_area = 1.0 / (area * s) as f64;
    let inv_depth = v.map(|v| 1.0 / v.depth);

    let half = SUBPIXEL as i64 / 2;
    let start = (
        x0 as i64 * SUBPIXEL as i64 + half,
        y0 as i64 * SUBPIXEL as i64 + half,
    );
    // Folding the fill rule into the edge values (−1 on edges that are not top-left) makes the
    // inside test "all three ≥ 0", one sign check of their bitwise or.
    let mut row =
        [0, 1, 2].map(|i| edge(edges[i].0, edges[i].1, start) * s - i64::from(!top_left[i]));
    for y in y0..=y1 {
        let mut e = row;
        for x in x0..=x1 {
            if (e[0] | e[1] | e[2]) >= 0 {
                // Screen-space weights (undoing the fill-rule offset), then perspective
                // correction through 1/depth.
                let l = [0, 1, 2].map(|i| (e[i] + i64::from(!top_left[i])) as f64 * inv_area);
                let q = [
                    l[0] * inv_depth[0],
                    l[1] * inv_depth[1],
                    l[2] * inv_depth[2],
                ];
                let sum = q[0] + q[1] + q[2];
                let depth = (1.0 / sum) as f32;
                let k = (y - oy) * band.width + x;
                if depth < band.depth[k] {
                    band.depth[k] = depth;
                    band.triangle[k] = f;
                    band.bary[k] = [(q[1] / sum) as f32, (q[2] / sum) as f32];
                }
            }
            for i in 0..3 {
                e[i] += step_x[i];
            }
        }
        for i in 0..3 {
            row[i] += step_y[i];
        }
    }
}
