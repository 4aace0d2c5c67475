//! Instant-NGP's multiresolution hash encoding: a point in [0,1]³ becomes, per level, the trilinear
//! blend of the feature vectors stored at the eight corners of its grid cell. Coarse levels whose
//! whole grid fits in the table are stored densely; finer ones hash the corner into a table of
//! 2^log2_table entries with the three primes.
//!
//! The lookup and its backward (a scatter-add into the table) are burn custom ops: rayon kernels
//! on the CPU (`Flex`, in `cpu.rs`), CubeCL kernels on the GPU (burn's wgpu backend, with or
//! without fusion, in `cube.rs`), and autodiff through a hand-written backward (`autodiff.rs`).
//! This file holds the op's public API: the encoding's shape, the backend trait, [`hash_encode`]
//! and the table as a burn module.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::module::{Module, Param};
use burn::tensor::{Device, Distribution, Shape, Tensor};
use serde::{Deserialize, Serialize};

mod autodiff;
mod cpu;
mod cube;

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

/// The fixtures the tests of `cpu.rs`, `cube.rs` and `autodiff.rs` share, and the layout's test.
#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A small grid: two dense levels and two hashed ones, so both index paths run.
    pub(super) fn small() -> HashGridConfig {
        HashGridConfig {
            levels: 4,
            features: 2,
            log2_table: 10,
            base_resolution: 4,
            finest_resolution: 40,
        }
    }

    pub(super) fn random_points(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..3 * n).map(|_| rng.random::<f32>()).collect()
    }

    pub(super) fn tensor(values: Vec<f32>, shape: [usize; 2], device: &Device) -> Tensor<2> {
        Tensor::from_data(TensorData::new(values, shape), device)
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
}
