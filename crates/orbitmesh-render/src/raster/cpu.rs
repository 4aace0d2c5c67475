//! The CPU rasterizer: triangles binned into 32×32 tiles, tiles rasterized in parallel with edge
//! functions at pixel centres, the top-left fill rule and a depth test, as GPUs do. Vertices are
//! snapped to 1/256 pixel and edge functions evaluated in integers, as GPUs do too: only exact
//! arithmetic makes the fill rule give every pixel on a shared edge to exactly one triangle.

use rayon::prelude::*;

use super::{NEAR, NO_TRIANGLE, ScreenVertex, VisibilityBuffer, project_vertices};
use crate::camera::Camera;
use crate::scene::Scene;

const TILE: usize = 32;
/// Sub-pixel precision of snapped vertices: 8 bits, as llvmpipe and most GPUs.
const SUBPIXEL: f64 = 256.0;
/// Triangles reaching further off-screen than this many pixels are skipped, which keeps the
/// integer edge functions far from overflow.
const GUARD_BAND: f64 = (1 << 22) as f64;

struct Tile {
    triangle: Vec<u32>,
    bary: Vec<[f32; 2]>,
    depth: Vec<f32>,
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
        let outside = |v: &ScreenVertex| {
            !(v.depth > NEAR) || !(v.x.abs() < GUARD_BAND) || !(v.y.abs() < GUARD_BAND)
        };
        if v.iter().any(outside) {
            continue;
        }
        let min_x = v.iter().map(|v| v.x).fold(f64::INFINITY, f64::min);
        let max_x = v.iter().map(|v| v.x).fold(f64::NEG_INFINITY, f64::max);
        let min_y = v.iter().map(|v| v.y).fold(f64::INFINITY, f64::min);
        let max_y = v.iter().map(|v| v.y).fold(f64::NEG_INFINITY, f64::max);
        // Pixels whose centre (i + 0.5) may fall inside, with the slack `draw` uses.
        let x0 = (min_x - 1.5).ceil().max(0.0) as usize;
        let y0 = (min_y - 1.5).ceil().max(0.0) as usize;
        let x1 = (max_x + 0.5).floor().min(w as f64 - 1.0);
        let y1 = (max_y + 0.5).floor().min(h as f64 - 1.0);
        if x1 < x0 as f64 || y1 < y0 as f64 {
            continue;
        }
        let (x1, y1) = (x1 as usize, y1 as usize);
        for ty in y0 / TILE..=y1 / TILE {
            for tx in x0 / TILE..=x1 / TILE {
                bins[ty * tiles_x + tx].push(f as u32);
            }
        }
    }

    let tiles: Vec<Tile> = bins
        .par_iter()
        .enumerate()
        .map(|(t, bin)| {
            let (tx, ty) = (t % tiles_x, t / tiles_x);
            let (ox, oy) = (tx * TILE, ty * TILE);
            let (tw, th) = (TILE.min(w - ox), TILE.min(h - oy));
            let mut tile = Tile {
                triangle: vec![NO_TRIANGLE; tw * th],
                bary: vec![[0.0; 2]; tw * th],
                depth: vec![f32::INFINITY; tw * th],
            };
            let mut zbuf = vec![f64::INFINITY; tw * th];
            for &f in bin {
                draw(
                    &mut tile,
                    &mut zbuf,
                    f,
                    scene.faces[f as usize].map(|i| verts[i as usize]),
                    (ox, oy, tw, th),
                );
            }
            tile
        })
        .collect();

    let mut out = VisibilityBuffer::empty(w as u32, h as u32);
    for (t, tile) in tiles.into_iter().enumerate() {
        let (ox, oy) = ((t % tiles_x) * TILE, (t / tiles_x) * TILE);
        let tw = TILE.min(w - ox);
        for (r, row) in tile.triangle.chunks(tw).enumerate() {
            let start = (oy + r) * w + ox;
            out.triangle[start..start + tw].copy_from_slice(row);
            out.bary[start..start + tw].copy_from_slice(&tile.bary[r * tw..(r + 1) * tw]);
            out.depth[start..start + tw].copy_from_slice(&tile.depth[r * tw..(r + 1) * tw]);
        }
    }
    out
}

/// Rasterizes one triangle into one tile (`ox`, `oy`: the tile's origin, `tw`×`th` its size).
fn draw(
    tile: &mut Tile,
    zbuf: &mut [f64],
    f: u32,
    v: [ScreenVertex; 3],
    (ox, oy, tw, th): (usize, usize, usize, usize),
) {
    let p = v.map(|v| {
        (
            (v.x * SUBPIXEL).round() as i64,
            (v.y * SUBPIXEL).round() as i64,
        )
    });
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

    let min_x = v.iter().map(|v| v.x).fold(f64::INFINITY, f64::min);
    let max_x = v.iter().map(|v| v.x).fold(f64::NEG_INFINITY, f64::max);
    let min_y = v.iter().map(|v| v.y).fold(f64::INFINITY, f64::min);
    let max_y = v.iter().map(|v| v.y).fold(f64::NEG_INFINITY, f64::max);
    // One pixel of slack: snapping may move an edge by half a sub-pixel.
    let x0 = ((min_x - 1.5).ceil().max(ox as f64) as usize).max(ox);
    let y0 = ((min_y - 1.5).ceil().max(oy as f64) as usize).max(oy);
    let x1 = ((max_x + 0.5).floor()).min((ox + tw - 1) as f64);
    let y1 = ((max_y + 0.5).floor()).min((oy + th - 1) as f64);
    if x1 < x0 as f64 || y1 < y0 as f64 {
        return;
    }
    let (x1, y1) = (x1 as usize, y1 as usize);
    let inv_area = 1.0 / (area * s) as f64;
    let inv_depth = v.map(|v| 1.0 / v.depth);

    let half = SUBPIXEL as i64 / 2;
    let start = (
        x0 as i64 * SUBPIXEL as i64 + half,
        y0 as i64 * SUBPIXEL as i64 + half,
    );
    let mut row = edges.map(|(a, b)| edge(a, b, start) * s);
    for y in y0..=y1 {
        let mut e = row;
        for x in x0..=x1 {
            let inside = (0..3).all(|i| e[i] > 0 || (e[i] == 0 && top_left[i]));
            if inside {
                // Screen-space weights, then perspective correction through 1/depth.
                let l = e.map(|e| e as f64 * inv_area);
                let q = [
                    l[0] * inv_depth[0],
                    l[1] * inv_depth[1],
                    l[2] * inv_depth[2],
                ];
                let sum = q[0] + q[1] + q[2];
                let depth = 1.0 / sum;
                let k = (y - oy) * tw + (x - ox);
                if depth < zbuf[k] {
                    zbuf[k] = depth;
                    tile.triangle[k] = f;
                    tile.bary[k] = [(q[1] / sum) as f32, (q[2] / sum) as f32];
                    tile.depth[k] = depth as f32;
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
