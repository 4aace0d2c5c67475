//! Instant-NGP's multiresolution hash encoding: a point in [0,1]³ becomes, per level, the trilinear
//! blend of the feature vectors stored at the eight corners of its grid cell. Coarse levels whose
//! whole grid fits in the table are stored densely; finer ones hash the corner into a table of
//! 2^log2_table entries with the three primes.
//!
//! The lookup and its backward (a scatter-add into the table) are burn custom ops: rayon kernels
//! on the CPU (`Flex`), CubeCL kernels on the GPU (burn's wgpu backend, with or without fusion),
//! and autodiff through a hand-written backward.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, Flex, backend_extension};
use burn::module::{Module, Param};
use burn::tensor::{DType, Shape};
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use burn_cubecl::CubeBackend;
use burn_cubecl::cubecl::{CubeCount, CubeDim, calculate_cube_count_elemwise};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::{empty_device_dtype, zeros_client};
use burn_cubecl::tensor::CubeTensor;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::simd::{Isa, isa};

const PRIMES: [u32; 3] = [1, 2_654_435_761, 805_459_861];

/// The encoding's shape (DESIGN.md's anchor by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HashGridConfig {
    pub levels: u32,
    pub features: u32,
    pub log2_table: u32,
    pub base_resolution: u32,
    pub finest_resolution: u32,
}

impl Default for HashGridConfig {
    fn default() -> Self {
        HashGridConfig {
            levels: 16,
            features: 2,
            log2_table: 19,
            base_resolution: 16,
            finest_resolution: 2048,
        }
    }
}

/// Where one level lives in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    /// Cells per side: the level's grid has `resolution + 1` corners per side.
    pub resolution: u32,
    /// First table row of the level.
    pub offset: u32,
    /// Rows the level owns.
    pub size: u32,
    pub dense: bool,
}

impl HashGridConfig {
    pub fn output_dim(&self) -> usize {
        (self.levels * self.features) as usize
    }

    /// Per-level resolutions grow geometrically from the base to the finest.
    pub fn layout(&self) -> Vec<Level> {
        let table = 1u64 << self.log2_table;
        let growth = if self.levels > 1 {
            ((self.finest_resolution as f64).ln() - (self.base_resolution as f64).ln())
                / (self.levels - 1) as f64
        } else {
            0.0
        };
        let mut offset = 0u32;
        (0..self.levels)
            .map(|l| {
                let resolution =
                    (self.base_resolution as f64 * (growth * l as f64).exp()).floor() as u32;
                let corners = (resolution as u64 + 1).pow(3);
                let dense = corners <= table;
                let size = corners.min(table) as u32;
                let level = Level {
                    resolution,
                    offset,
                    size,
                    dense,
                };
                offset += size;
                level
            })
            .collect()
    }

    pub fn table_rows(&self) -> usize {
        self.layout().iter().map(|l| l.size as usize).sum()
    }
}

/// Table rows and trilinear weights of the eight corners around `p` (in [0,1]³) on one level;
/// corner k has x = bit 2, y = bit 1, z = bit 0.
#[inline(always)]
fn corners(level: &Level, p: [f32; 3]) -> ([u32; 8], [f32; 8]) {
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

/// The hash encoding as a backend op.
#[backend_extension(Cube, Fusion, Flex, Autodiff)]
pub trait HashGridOps: Backend {
    /// `points` [n,3] in [0,1]³, `table` [rows, F] → features [n, L·F].
    #[fusion(dtype = table, shape = encoded_shape(points, config))]
    fn hash_encode(
        points: FloatTensor<Self>,
        table: FloatTensor<Self>,
        config: HashGridConfig,
    ) -> FloatTensor<Self>;
    /// The table's gradient [rows, F] from the features' gradient [n, L·F].
    #[fusion(dtype = grad_out, shape = table_shape(config))]
    fn hash_encode_backward(
        points: FloatTensor<Self>,
        grad_out: FloatTensor<Self>,
        config: HashGridConfig,
    ) -> FloatTensor<Self>;
}

fn encoded_shape(points: &Shape, config: &HashGridConfig) -> Shape {
    Shape::new([points[0], config.output_dim()])
}

fn table_shape(config: &HashGridConfig) -> Shape {
    Shape::new([config.table_rows(), config.features as usize])
}

/// The GPU kernels (CubeCL, so they run wherever burn's wgpu backend does): one unit per point
/// and one launch per level, the same arithmetic as [`corners`].
mod kernel {
    use burn_cubecl::cubecl;
    use burn_cubecl::cubecl::prelude::*;

    /// One level's shape, as the kernels take it.
    #[derive(CubeType, CubeLaunch, Clone, Copy)]
    pub struct LevelArgs {
        pub resolution: u32,
        /// First table row of the level.
        pub offset: u32,
        /// Rows of a hashed level minus one (a power of two); unused on a dense level.
        pub mask: u32,
        /// 1 when the level is stored densely.
        pub dense: u32,
        /// The level's first output column.
        pub column: u32,
        pub features: u32,
    }

    /// The cell coordinate and the fraction within it of one coordinate, clamped as on the CPU.
    #[cube]
    fn split(v: f32, resolution: u32) -> (u32, f32) {
        let x = clamp(v, 0.0, 0.999_999) * f32::cast_from(resolution);
        let c = u32::cast_from(x);
        (c, x - f32::cast_from(c))
    }

    /// Table row and trilinear weight of corner `k` (x = bit 2, y = bit 1, z = bit 0) around
    /// point `i`.
    #[cube]
    fn corner(points: &Tensor<f32>, i: usize, k: u32, level: &LevelArgs) -> (u32, f32) {
        let (cx, fx) = split(points[3 * i], level.resolution);
        let (cy, fy) = split(points[3 * i + 1], level.resolution);
        let (cz, fz) = split(points[3 * i + 2], level.resolution);
        let (bx, by, bz) = ((k >> 2) & 1, (k >> 1) & 1, k & 1);
        let (x, y, z) = (cx + bx, cy + by, cz + bz);
        let wx = if bx == 1 { fx } else { 1.0 - fx };
        let wy = if by == 1 { fy } else { 1.0 - fy };
        let wz = if bz == 1 { fz } else { 1.0 - fz };
        let side = level.resolution + 1;
        let index = if level.dense == 1 {
            (x * side + y) * side + z
        } else {
            (x ^ (y * 2_654_435_761u32) ^ (z * 805_459_861u32)) & level.mask
        };
        (level.offset + index, wx * wy * wz)
    }

    #[cube(launch)]
    pub fn encode_level(
        points: &Tensor<f32>,
        table: &Tensor<f32>,
        output: &mut Tensor<f32>,
        level: LevelArgs,
        dim: u32,
    ) {
        let i = ABSOLUTE_POS;
        if i >= points.len() / 3 {
            terminate!();
        }
        let features = level.features as usize;
        for f in 0..features {
            output[i * dim as usize + level.column as usize + f] = 0.0;
        }
        for k in 0..8u32 {
            let (row, w) = corner(points, i, k, &level);
            for f in 0..features {
                let o = i * dim as usize + level.column as usize + f;
                output[o] += w * table[row as usize * features + f];
            }
        }
    }

    /// Scatter-adds into `grad` (f32 bits held in u32 atomics: a compare-and-swap loop works on
    /// every GPU, float atomics do not).
    #[cube(launch)]
    pub fn encode_level_backward(
        points: &Tensor<f32>,
        grad_out: &Tensor<f32>,
        grad: &mut Tensor<Atomic<u32>>,
        level: LevelArgs,
        dim: u32,
    ) {
        let i = ABSOLUTE_POS;
        if i >= points.len() / 3 {
            terminate!();
        }
        let features = level.features as usize;
        for k in 0..8u32 {
            let (row, w) = corner(points, i, k, &level);
            for f in 0..features {
                let add = w * grad_out[i * dim as usize + level.column as usize + f];
                if add != 0.0 {
                    let slot = &grad[row as usize * features + f];
                    let mut seen = slot.load();
                    loop {
                        let sum = u32::reinterpret(f32::reinterpret(seen) + add);
                        let before = slot.compare_exchange_weak(seen, sum);
                        if before == seen {
                            break;
                        }
                        seen = before;
                    }
                }
            }
        }
    }
}

impl HashGridOps for CubeBackend {
    fn hash_encode(points: CubeTensor, table: CubeTensor, config: HashGridConfig) -> CubeTensor {
        let points = into_contiguous(points);
        let table = into_contiguous(table);
        let n = points.meta.shape()[0];
        let dim = config.output_dim();
        let output = empty_device_dtype(
            points.client.clone(),
            points.device.clone(),
            Shape::new([n, dim]),
            DType::F32,
        );
        per_level(&points, &config, |cubes, cube_dim, level| {
            kernel::encode_level::launch(
                &points.client,
                cubes,
                cube_dim,
                points.clone().into_tensor_arg(),
                table.clone().into_tensor_arg(),
                output.clone().into_tensor_arg(),
                level,
                dim as u32,
            );
        });
        output
    }

    fn hash_encode_backward(
        points: CubeTensor,
        grad_out: CubeTensor,
        config: HashGridConfig,
    ) -> CubeTensor {
        let points = into_contiguous(points);
        let grad_out = into_contiguous(grad_out);
        let grad = zeros_client(
            points.client.clone(),
            points.device.clone(),
            table_shape(&config),
            DType::F32,
        );
        per_level(&points, &config, |cubes, cube_dim, level| {
            kernel::encode_level_backward::launch(
                &points.client,
                cubes,
                cube_dim,
                points.clone().into_tensor_arg(),
                grad_out.clone().into_tensor_arg(),
                grad.clone().into_tensor_arg(),
                level,
                config.output_dim() as u32,
            );
        });
        grad
    }
}

/// Calls `launch` once per level with a grid of one unit per point and the level's arguments.
fn per_level(
    points: &CubeTensor,
    config: &HashGridConfig,
    mut launch: impl FnMut(CubeCount, CubeDim, kernel::LevelArgsLaunch),
) {
    let n = points.meta.shape()[0];
    let cube_dim = CubeDim::new(&points.client, n);
    let cubes = calculate_cube_count_elemwise(&points.client, n, cube_dim);
    for (l, level) in config.layout().iter().enumerate() {
        let args = kernel::LevelArgsLaunch::new(
            level.resolution,
            level.offset,
            level.size.wrapping_sub(1),
            u32::from(level.dense),
            l as u32 * config.features,
            config.features,
        );
        launch(cubes.clone(), cube_dim, args);
    }
}

/// A Flex tensor's values in row-major order (CPU kernels take plain slices).
/// The values of a row-major f32 tensor (as `FlexTensor::to_contiguous` returns, sharing the
/// storage where the tensor already is).
pub(crate) fn flex_values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("a contiguous f32 tensor")
}

pub(crate) fn flex_tensor(values: Vec<f32>, shape: [usize; 2]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
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

impl<B: HashGridOps, C: CheckpointStrategy> HashGridOps for Autodiff<B, C> {
    fn hash_encode(
        points: FloatTensor<Self>,
        table: FloatTensor<Self>,
        config: HashGridConfig,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct EncodeBackward;
        impl<B: HashGridOps> Backward<B, 1> for EncodeBackward {
            type State = (FloatTensor<B>, HashGridConfig);
            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let [table] = ops.parents;
                let grad_out = grads.consume::<B>(&ops.node);
                if let Some(node) = table {
                    let (points, config) = ops.state;
                    grads.register::<B>(node.id, B::hash_encode_backward(points, grad_out, config));
                }
            }
        }
        let points = points.into_primitive();
        match EncodeBackward
            .prepare::<C>([table.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let out = B::hash_encode(points.clone(), table.primitive().clone(), config);
                prep.finish((points, config), out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::hash_encode(points, table.into_primitive(), config))
            }
        }
    }

    fn hash_encode_backward(
        points: FloatTensor<Self>,
        grad_out: FloatTensor<Self>,
        config: HashGridConfig,
    ) -> FloatTensor<Self> {
        <Self as AutodiffBackend>::from_inner(B::hash_encode_backward(
            points.into_primitive(),
            grad_out.into_primitive(),
            config,
        ))
    }
}

/// Differentiable in `table` (the points are inputs, not parameters).
pub fn hash_encode(points: Tensor<2>, table: Tensor<2>, config: HashGridConfig) -> Tensor<2> {
    Tensor::from_dispatch(Dispatch::hash_encode(
        points.into_dispatch(),
        table.into_dispatch(),
        config,
    ))
}

/// The encoding's parameters as a burn module, so they save and load with the rest of the field.
#[derive(Module, Debug)]
pub struct HashGrid {
    pub table: Param<Tensor<2>>,
}

impl HashGrid {
    /// Table entries start uniform in ±1e-4, as instant-ngp's.
    pub fn new(config: &HashGridConfig, device: &Device) -> Self {
        let table = Tensor::random(
            [config.table_rows(), config.features as usize],
            Distribution::Uniform(-1e-4, 1e-4),
            device,
        );
        HashGrid {
            table: Param::from_tensor(table),
        }
    }

    pub fn forward(&self, points: Tensor<2>, config: HashGridConfig) -> Tensor<2> {
        hash_encode(points, self.table.val(), config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Int;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A small grid: two dense levels and two hashed ones, so both index paths run.
    fn small() -> HashGridConfig {
        HashGridConfig {
            levels: 4,
            features: 2,
            log2_table: 10,
            base_resolution: 4,
            finest_resolution: 40,
        }
    }

    fn random_points(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..3 * n).map(|_| rng.random::<f32>()).collect()
    }

    fn tensor(values: Vec<f32>, shape: [usize; 2], device: &Device) -> Tensor<2> {
        Tensor::from_data(TensorData::new(values, shape), device)
    }

    /// The same encoding in plain burn ops (select + weighted sum), differentiated by burn.
    fn reference(config: &HashGridConfig, points: &[f32], table: Tensor<2>) -> Tensor<2> {
        let layout = config.layout();
        let n = points.len() / 3;
        let f = config.features as usize;
        let device = table.device();
        let mut rows = Vec::new();
        let mut weights = Vec::new();
        for p in points.chunks_exact(3) {
            for level in &layout {
                let (r, w) = corners(level, [p[0], p[1], p[2]]);
                rows.extend(r.map(|v| v as i64));
                weights.extend(w);
            }
        }
        let l = layout.len();
        let idx = Tensor::<1, Int>::from_data(TensorData::new(rows, [n * l * 8]), &device);
        let gathered = table.select(0, idx).reshape([n, l, 8, f]);
        let w = Tensor::<4>::from_data(TensorData::new(weights, [n, l, 8, 1]), &device);
        (gathered * w).sum_dim(2).reshape([n, l * f])
    }

    #[test]
    fn layout_is_dense_where_the_grid_fits() {
        let layout = HashGridConfig::default().layout();
        assert_eq!(layout[0].resolution, 16);
        assert_eq!(layout[15].resolution, 2048);
        assert!(layout[0].dense && layout[1].dense);
        assert!(!layout[15].dense);
        for level in &layout {
            assert!(level.size <= 1 << 19);
            assert_eq!(level.dense, (level.resolution as u64 + 1).pow(3) <= 1 << 19);
        }
        // Levels are laid end to end.
        for pair in layout.windows(2) {
            assert_eq!(pair[1].offset, pair[0].offset + pair[0].size);
        }
    }

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
    fn kernel_matches_plain_burn_ops_forward_and_gradient() {
        let config = small();
        let device = Device::flex().autodiff();
        let points = random_points(300, 1);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let rows = config.table_rows();
        let table_values: Vec<f32> = (0..rows * 2).map(|_| rng.random::<f32>() - 0.5).collect();
        let upstream: Vec<f32> = (0..300 * config.output_dim())
            .map(|_| rng.random::<f32>() - 0.5)
            .collect();
        let run = |custom: bool| {
            let table = tensor(table_values.clone(), [rows, 2], &device).require_grad();
            let p = tensor(points.clone(), [300, 3], &device);
            let out = if custom {
                hash_encode(p, table.clone(), config)
            } else {
                reference(&config, &points, table.clone())
            };
            let up = tensor(upstream.clone(), [300, config.output_dim()], &device);
            let loss = (out.clone() * up).sum();
            let grads = loss.backward();
            let grad = table.grad(&grads).expect("table gradient");
            (
                out.into_data().try_into_vec::<f32>().unwrap(),
                grad.into_data().try_into_vec::<f32>().unwrap(),
            )
        };
        let (out, grad) = run(true);
        let (out_ref, grad_ref) = run(false);
        let close = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .all(|(x, y)| (x - y).abs() <= 1e-5 + 1e-4 * y.abs())
        };
        assert!(close(&out, &out_ref), "forward differs from the reference");
        assert!(
            close(&grad, &grad_ref),
            "gradient differs from the reference"
        );
        assert!(grad.iter().any(|g| *g != 0.0));
    }

    #[test]
    fn gpu_kernels_match_the_cpu_kernels() {
        if !orbitmesh_render::gpu_tests::gpu_or_skip() {
            return;
        }
        let config = small();
        let n = 4000;
        // Points on the cube's faces and corners too, where the clamping decides the cell.
        let mut points = random_points(n, 3);
        points[..9].copy_from_slice(&[0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.5, 1.0]);
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let rows = config.table_rows();
        let table_values: Vec<f32> = (0..rows * 2).map(|_| rng.random::<f32>() - 0.5).collect();
        // Positive, so a table row's gradient is a sum without cancellation and the comparison
        // measures the kernels, not the order in which the GPU's atomics happen to add.
        let upstream: Vec<f32> = (0..n * config.output_dim())
            .map(|_| rng.random::<f32>())
            .collect();
        let run = |device: Device| {
            let table = tensor(table_values.clone(), [rows, 2], &device).require_grad();
            let out = hash_encode(
                tensor(points.clone(), [n, 3], &device),
                table.clone(),
                config,
            );
            let up = tensor(upstream.clone(), [n, config.output_dim()], &device);
            let grads = (out.clone() * up).sum().backward();
            let grad = table.grad(&grads).expect("table gradient");
            (
                out.into_data().try_into_vec::<f32>().unwrap(),
                grad.into_data().try_into_vec::<f32>().unwrap(),
            )
        };
        let (out_cpu, grad_cpu) = run(Device::flex().autodiff());
        let (out_gpu, grad_gpu) =
            run(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice).autodiff());
        let forward = crate::relative_difference(&out_gpu, &out_cpu);
        let backward = crate::relative_difference(&grad_gpu, &grad_cpu);
        eprintln!("hash encoding, GPU against CPU: forward {forward:.2e}, gradient {backward:.2e}");
        assert!(forward <= 1e-4 && backward <= 1e-4);
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
