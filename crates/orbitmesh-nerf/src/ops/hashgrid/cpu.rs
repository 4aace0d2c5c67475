//! The CPU twin of the hash-grid encoding: the forward and its backward on slices (rayon, compiled
//! per instruction set), the reference every GPU kernel is tested against, and the Flex backend's
//! implementation of [`HashGridOps`].

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use rayon::prelude::*;

use super::{HashGridConfig, HashGridOps, Level};
use crate::ops::{flex_tensor, flex_values};
use crate::simd::{Isa, isa};

const PRIMES: [u32; 3] = [1, 2_654_435_761, 805_459_861];

/// Table rows and trilinear weights of the eight corners around `p` (in [0,1]³) on one level;
/// corner k has x = bit 2, y = bit 1, z = bit 0.
#[inline(always)]
pub(super) fn corners(level: &Level, p: [f32; 3]) -> ([u32; 8], [f32; 8]) {
    let r = level.resolution as f32;
    // Clamped so the far corner stays on the grid. On a non-negative value truncation is the
    // floor, without the libm call `floor` is on x86-64's baseline.
    let split = |v: f32| {
        let x = v.clamp(0.0, 1.0 - 1e-6) * r;
        let c = x as u32;
        (c, x - c as f32)
    };
    let (cx, fx) = split(p[0]);
    let (cy, fy) = split(p[1]);
    let (cz, fz) = split(p[2]);
    // Per-axis terms for the two corner coordinates, combined below: the dense index is a sum
    // of them, the hash an xor.
    let (ax, ay, az) = if level.dense {
        let side = level.resolution + 1;
        (
            [cx * side * side, (cx + 1) * side * side],
            [cy * side, (cy + 1) * side],
            [cz, cz + 1],
        )
    } else {
        (
            [cx.wrapping_mul(PRIMES[0]), (cx + 1).wrapping_mul(PRIMES[0])],
            [cy.wrapping_mul(PRIMES[1]), (cy + 1).wrapping_mul(PRIMES[1])],
            [cz.wrapping_mul(PRIMES[2]), (cz + 1).wrapping_mul(PRIMES[2])],
        )
    };
    let (wx, wy, wz) = ([1.0 - fx, fx], [1.0 - fy, fy], [1.0 - fz, fz]);
    // A hashed level's size is the table size, a power of two.
    let mask = level.size - 1;
    let mut rows = [0u32; 8];
    let mut weights = [0f32; 8];
    for k in 0..8 {
        let (bx, by, bz) = (k >> 2, (k >> 1) & 1, k & 1);
        let index = if level.dense {
            ax[bx] + ay[by] + az[bz]
        } else {
            (ax[bx] ^ ay[by] ^ az[bz]) & mask
        };
        rows[k] = level.offset + index;
        weights[k] = wx[bx] * wy[by] * wz[bz];
    }
    (rows, weights)
}

/// Points whose corners are found and prefetched together.
const BLOCK: usize = 16;

/// The corners of a block of points on one level, corner-major: `rows[k][j]` is corner k of the
/// block's point j. Laid out so that the corners of all the block's points are computed at once in
/// vector registers.
struct CornerBlock {
    rows: [[u32; BLOCK]; 8],
    weights: [[f32; BLOCK]; 8],
    len: usize,
}

impl CornerBlock {
    fn new() -> CornerBlock {
        CornerBlock {
            rows: [[0; BLOCK]; 8],
            weights: [[0.0; BLOCK]; 8],
            len: 0,
        }
    }

    /// The corners of `points` (at most [`BLOCK`] of them, [n,3]); lanes past them hold the
    /// corners of the origin, and are never visited.
    #[inline(always)]
    fn fill(&mut self, level: &Level, points: &[f32]) {
        let mut p = [[0.0f32; 3]; BLOCK];
        for (q, src) in p.iter_mut().zip(points.chunks_exact(3)) {
            *q = [src[0], src[1], src[2]];
        }
        for (j, p) in p.iter().enumerate() {
            let (rows, weights) = corners(level, *p);
            for k in 0..8 {
                self.rows[k][j] = rows[k];
                self.weights[k][j] = weights[k];
            }
        }
        self.len = points.len() / 3;
    }

    #[inline(always)]
    fn prefetch(&self, visitor: &impl CornerVisitor) {
        for rows in &self.rows {
            rows[..self.len].iter().for_each(|row| visitor.fetch(*row));
        }
    }
}

/// What a kernel does with the corners of each point. Methods, not closures: a closure is compiled
/// without the instruction sets of the `#[target_feature]` function that calls it, and is not
/// inlined there.
trait CornerVisitor {
    /// Prefetches table row `row`.
    fn fetch(&self, row: u32);
    /// Point `i`, whose corners are lane `j` of `block`.
    fn visit(&mut self, i: usize, block: &CornerBlock, j: usize);
}

/// Visits each point of `points` [n,3] on `level`, in order. A fine level's rows are random and its
/// table is larger than L2, so each block of points has its rows prefetched before the block
/// before it is visited: the cache misses then overlap instead of following one another.
#[inline(always)]
fn for_each_corners(level: &Level, points: &[f32], visitor: &mut impl CornerVisitor) {
    let (mut current, mut next) = (CornerBlock::new(), CornerBlock::new());
    let mut blocks = points.chunks(3 * BLOCK);
    let Some(first) = blocks.next() else {
        return;
    };
    current.fill(level, first);
    current.prefetch(visitor);
    let mut start = 0;
    loop {
        let following = blocks.next();
        if let Some(block) = following {
            next.fill(level, block);
            next.prefetch(visitor);
        }
        for j in 0..current.len {
            visitor.visit(start + j, &current, j);
        }
        if following.is_none() {
            return;
        }
        start += current.len;
        std::mem::swap(&mut current, &mut next);
    }
}

#[inline(always)]
fn prefetch(address: *const f32) {
    // SAFETY: a prefetch is a hint and never faults, whatever the address.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(address.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

/// CPU forward: `points` [n,3] row-major, `table` [rows, F] → [n, L·F].
pub fn encode_cpu(config: &HashGridConfig, points: &[f32], table: &[f32]) -> Vec<f32> {
    const CHUNK: usize = 4096;
    let layout = config.layout();
    let f = config.features as usize;
    let n = points.len() / 3;
    let isa = isa();
    // Level by level over all the points, into one slab [n, F] per level: a level's rows (a few
    // MiB at most) then stay in cache, where point by point every level's rows compete for it
    // and most lookups miss. The slabs are interleaved into rows at the end.
    let mut slabs = vec![0f32; n * config.output_dim()];
    slabs
        .par_chunks_mut(n.max(1) * f)
        .zip(layout.par_iter())
        .for_each(|(slab, level)| {
            slab.par_chunks_mut(CHUNK * f)
                .zip(points.par_chunks(CHUNK * 3))
                .for_each(|(out, points)| match isa {
                    // SAFETY: `isa()` found these instruction sets on this CPU.
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512 => unsafe { encode_level_avx512(level, points, table, f, out) },
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2 => unsafe { encode_level_avx2(level, points, table, f, out) },
                    Isa::Plain => encode_level(level, points, table, f, out),
                });
        });
    interleave_levels(&slabs, n, config)
}

/// Sums a level's corner rows into each point's features.
struct Gather<'a> {
    table: &'a [f32],
    f: usize,
    out: &'a mut [f32],
}

impl CornerVisitor for Gather<'_> {
    #[inline(always)]
    fn fetch(&self, row: u32) {
        prefetch(self.table.as_ptr().wrapping_add(row as usize * self.f));
    }

    #[inline(always)]
    fn visit(&mut self, i: usize, block: &CornerBlock, j: usize) {
        match self.f {
            2 => self.gather::<2>(i, block, j),
            4 => self.gather::<4>(i, block, j),
            f => {
                let o = &mut self.out[i * f..(i + 1) * f];
                for k in 0..8 {
                    let (start, w) = (block.rows[k][j] as usize * f, block.weights[k][j]);
                    for (o, e) in o.iter_mut().zip(&self.table[start..start + f]) {
                        *o += w * e;
                    }
                }
            }
        }
    }
}

impl Gather<'_> {
    /// [`CornerVisitor::visit`] for F features, summed in registers: through memory, each
    /// corner's sum waited on the store of the one before.
    #[inline(always)]
    fn gather<const F: usize>(&mut self, i: usize, block: &CornerBlock, j: usize) {
        let mut sum = [0.0f32; F];
        for k in 0..8 {
            let (start, w) = (block.rows[k][j] as usize * F, block.weights[k][j]);
            let row: &[f32; F] = self.table[start..start + F].try_into().expect("F features");
            for (s, e) in sum.iter_mut().zip(row) {
                *s += w * e;
            }
        }
        self.out[i * F..(i + 1) * F].copy_from_slice(&sum);
    }
}

/// One level's features [n, F] of `points` [n,3].
#[inline(always)]
fn encode_level(level: &Level, points: &[f32], table: &[f32], f: usize, out: &mut [f32]) {
    for_each_corners(level, points, &mut Gather { table, f, out });
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2,fma")]
unsafe fn encode_level_avx512(
    level: &Level,
    points: &[f32],
    table: &[f32],
    f: usize,
    out: &mut [f32],
) {
    encode_level(level, points, table, f, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn encode_level_avx2(
    level: &Level,
    points: &[f32],
    table: &[f32],
    f: usize,
    out: &mut [f32],
) {
    encode_level(level, points, table, f, out)
}

/// Copies one point's features on one level. A slice copy of run-time length is a call to
/// `memcpy`, expensive when made once per point and level.
#[inline(always)]
fn copy_features(dst: &mut [f32], src: &[f32]) {
    if dst.len() == 2 && src.len() == 2 {
        dst[0] = src[0];
        dst[1] = src[1];
    } else {
        dst.copy_from_slice(src);
    }
}

/// [L, n, F] → [n, L·F].
fn interleave_levels(slabs: &[f32], n: usize, config: &HashGridConfig) -> Vec<f32> {
    const CHUNK: usize = 1024;
    let f = config.features as usize;
    let dim = config.output_dim();
    let mut out = vec![0f32; n * dim];
    out.par_chunks_mut(CHUNK * dim)
        .enumerate()
        .for_each(|(chunk, out)| {
            let first = chunk * CHUNK;
            for (l, slab) in slabs.chunks_exact(n * f).enumerate() {
                let slab = &slab[first * f..];
                for (o, s) in out.chunks_exact_mut(dim).zip(slab.chunks_exact(f)) {
                    copy_features(&mut o[l * f..(l + 1) * f], s);
                }
            }
        });
    out
}

/// CPU backward: the gradient on the table, scatter-added. Levels own disjoint rows, so each
/// level is one parallel task with no write conflicts and a fixed summation order.
pub fn encode_backward_cpu(config: &HashGridConfig, points: &[f32], grad_out: &[f32]) -> Vec<f32> {
    let layout = config.layout();
    let f = config.features as usize;
    let dim = config.output_dim();
    let mut grad = vec![0f32; config.table_rows() * f];
    let mut slices = Vec::with_capacity(layout.len());
    let mut rest = grad.as_mut_slice();
    for level in &layout {
        let (head, tail) = rest.split_at_mut(level.size as usize * f);
        slices.push(head);
        rest = tail;
    }
    let isa = isa();
    slices
        .into_par_iter()
        .zip(layout.par_iter())
        .enumerate()
        .for_each(|(l, (level_grad, level))| {
            // The level's features start at column l·F of rows `dim` apart.
            let grad_in = Strided {
                values: &grad_out[l * f..],
                stride: dim,
                f,
            };
            match isa {
                // SAFETY: `isa()` found these instruction sets on this CPU.
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => unsafe { scatter_level_avx512(level, points, grad_in, level_grad) },
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => unsafe { scatter_level_avx2(level, points, grad_in, level_grad) },
                Isa::Plain => scatter_level(level, points, grad_in, level_grad),
            }
        });
    grad
}

/// One level's F features of each point, rows `stride` apart.
#[derive(Clone, Copy)]
struct Strided<'a> {
    values: &'a [f32],
    stride: usize,
    f: usize,
}

/// Adds each point's feature gradient into its level's corner rows of the table gradient.
struct Scatter<'a> {
    level: &'a Level,
    grad_in: Strided<'a>,
    level_grad: &'a mut [f32],
}

impl CornerVisitor for Scatter<'_> {
    #[inline(always)]
    fn fetch(&self, row: u32) {
        let local = (row - self.level.offset) as usize * self.grad_in.f;
        prefetch(self.level_grad.as_ptr().wrapping_add(local));
    }

    #[inline(always)]
    fn visit(&mut self, i: usize, block: &CornerBlock, j: usize) {
        match self.grad_in.f {
            2 => self.scatter::<2>(i, block, j),
            4 => self.scatter::<4>(i, block, j),
            f => {
                let Strided { values, stride, .. } = self.grad_in;
                let g = &values[i * stride..i * stride + f];
                if g.iter().all(|v| *v == 0.0) {
                    return;
                }
                for k in 0..8 {
                    let local = (block.rows[k][j] - self.level.offset) as usize * f;
                    let w = block.weights[k][j];
                    for (t, g) in self.level_grad[local..local + f].iter_mut().zip(g) {
                        *t += w * g;
                    }
                }
            }
        }
    }
}

impl Scatter<'_> {
    /// [`CornerVisitor::visit`] for F features, the row updates unrolled.
    #[inline(always)]
    fn scatter<const F: usize>(&mut self, i: usize, block: &CornerBlock, j: usize) {
        let Strided { values, stride, .. } = self.grad_in;
        let g: [f32; F] = values[i * stride..i * stride + F]
            .try_into()
            .expect("F features");
        if g.iter().all(|v| *v == 0.0) {
            return;
        }
        for k in 0..8 {
            let local = (block.rows[k][j] - self.level.offset) as usize * F;
            let w = block.weights[k][j];
            let row: &mut [f32; F] = (&mut self.level_grad[local..local + F])
                .try_into()
                .expect("F features");
            for (t, g) in row.iter_mut().zip(&g) {
                *t += w * g;
            }
        }
    }
}

/// Adds one level's share of the features' gradient into its rows of the table gradient,
/// `level_grad`.
#[inline(always)]
fn scatter_level(level: &Level, points: &[f32], grad_in: Strided, level_grad: &mut [f32]) {
    let mut scatter = Scatter {
        level,
        grad_in,
        level_grad,
    };
    for_each_corners(level, points, &mut scatter);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2,fma")]
unsafe fn scatter_level_avx512(
    level: &Level,
    points: &[f32],
    grad_in: Strided,
    level_grad: &mut [f32],
) {
    scatter_level(level, points, grad_in, level_grad)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn scatter_level_avx2(
    level: &Level,
    points: &[f32],
    grad_in: Strided,
    level_grad: &mut [f32],
) {
    scatter_level(level, points, grad_in, level_grad)
}

impl HashGridOps for Flex {
    fn hash_encode(points: FlexTensor, table: FlexTensor, config: HashGridConfig) -> FlexTensor {
        let (points, table) = (points.to_contiguous(), table.to_contiguous());
        let out = encode_cpu(&config, flex_values(&points), flex_values(&table));
        let n = out.len() / config.output_dim();
        flex_tensor(out, [n, config.output_dim()])
    }

    fn hash_encode_backward(
        points: FlexTensor,
        grad_out: FlexTensor,
        config: HashGridConfig,
    ) -> FlexTensor {
        let (points, grad_out) = (points.to_contiguous(), grad_out.to_contiguous());
        let grad = encode_backward_cpu(&config, flex_values(&points), flex_values(&grad_out));
        flex_tensor(grad, [config.table_rows(), config.features as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::hashgrid::tests::{random_points, small};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn corner_indices_follow_instant_ngp() {
        let dense = Level {
            resolution: 4,
            offset: 10,
            size: 125,
            dense: true,
        };
        // (0.3, 0.55, 0.8)·4 = (1.2, 2.2, 3.2): cell (1, 2, 3), fractions 0.2 each.
        let (rows, weights) = corners(&dense, [0.3, 0.55, 0.8]);
        assert_eq!(rows[0], 10 + (5 + 2) * 5 + 3);
        assert_eq!(rows[7], 10 + (2 * 5 + 3) * 5 + 4);
        assert!((weights[0] - 0.8f32.powi(3)).abs() < 1e-5);
        assert!((weights.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        let hashed = Level {
            resolution: 100,
            offset: 0,
            size: 1 << 10,
            dense: false,
        };
        let (rows, _) = corners(&hashed, [0.3, 0.55, 0.8]);
        let expect =
            (30u32 ^ 55u32.wrapping_mul(2_654_435_761) ^ 80u32.wrapping_mul(805_459_861)) & 1023;
        assert_eq!(rows[0], expect);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let config = small();
        let points = random_points(50, 3);
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut table: Vec<f32> = (0..config.table_rows() * 2)
            .map(|_| rng.random::<f32>() - 0.5)
            .collect();
        let upstream: Vec<f32> = (0..50 * config.output_dim())
            .map(|_| rng.random::<f32>() - 0.5)
            .collect();
        let loss = |table: &[f32]| -> f64 {
            encode_cpu(&config, &points, table)
                .iter()
                .zip(&upstream)
                .map(|(o, u)| f64::from(o * u))
                .sum()
        };
        let grad = encode_backward_cpu(&config, &points, &upstream);
        // Check the rows that the points touch (the others have zero gradient and stay so).
        let touched: Vec<usize> = (0..grad.len())
            .filter(|i| grad[*i] != 0.0)
            .take(40)
            .collect();
        assert!(touched.len() >= 20);
        for i in touched {
            let h = 1e-2f32;
            let saved = table[i];
            table[i] = saved + h;
            let up = loss(&table);
            table[i] = saved - h;
            let down = loss(&table);
            table[i] = saved;
            let numeric = (up - down) / (2.0 * f64::from(h));
            // The encoding is linear in the table, so central differences are exact up to rounding.
            assert!(
                (numeric - f64::from(grad[i])).abs() < 1e-3 * (1.0 + numeric.abs()),
                "row {i}: analytic {} vs numeric {numeric}",
                grad[i]
            );
        }
    }

    #[test]
    fn points_on_the_far_faces_stay_on_the_grid() {
        let config = small();
        let table = vec![1.0f32; config.table_rows() * 2];
        let out = encode_cpu(&config, &[1.0, 1.0, 1.0, 0.0, 0.0, 0.0], &table);
        // Weights sum to one on every level, so an all-ones table encodes to ones.
        assert!(out.iter().all(|v| (v - 1.0).abs() < 1e-5));
    }
}
