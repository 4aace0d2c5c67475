//! The radiance field: hash encoding → density MLP (first output = log density, the other 15 are
//! features) → colour MLP on the view direction's degree-4 spherical harmonics + those features.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::ops::hashgrid::{HashGrid, HashGridConfig};
use crate::ops::mlp::{MAX_LOG_DENSITY, radiance_mlp};

/// Number of spherical-harmonic coefficients up to degree 4.
pub const SH_COEFFS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FieldConfig {
    pub grid: HashGridConfig,
    pub hidden: usize,
    /// Density MLP outputs: 1 log density + geometry features.
    pub geo_features: usize,
}

impl Default for FieldConfig {
    fn default() -> Self {
        FieldConfig {
            grid: HashGridConfig::default(),
            hidden: 64,
            geo_features: 16,
        }
    }
}

#[derive(Module, Debug)]
pub struct RadianceField {
    pub grid: HashGrid,
    density_in: Linear,
    density_out: Linear,
    colour_in: Linear,
    colour_hidden: Linear,
    colour_out: Linear,
}

fn linear(inputs: usize, outputs: usize, device: &Device) -> Linear {
    // No biases, as instant-ngp's fully fused MLPs.
    LinearConfig::new(inputs, outputs)
        .with_bias(false)
        .init(device)
}

impl RadianceField {
    pub fn new(config: &FieldConfig, device: &Device) -> Self {
        let h = config.hidden;
        RadianceField {
            grid: HashGrid::new(&config.grid, device),
            density_in: linear(config.grid.output_dim(), h, device),
            density_out: linear(h, config.geo_features, device),
            colour_in: linear(SH_COEFFS + config.geo_features - 1, h, device),
            colour_hidden: linear(h, h, device),
            colour_out: linear(h, 3, device),
        }
    }

    /// The density MLP's output [n, geo_features] at `points` [n,3] in [0,1]³.
    pub fn geometry(&self, points: Tensor<2>, config: &FieldConfig) -> Tensor<2> {
        let encoded = self.grid.forward(points, config.grid);
        self.density_out
            .forward(relu(self.density_in.forward(encoded)))
    }

    /// Density σ [n] from the density MLP's output.
    pub fn density_of(geometry: Tensor<2>) -> Tensor<1> {
        let n = geometry.dims()[0];
        geometry
            .narrow(1, 0, 1)
            .clamp_max(MAX_LOG_DENSITY)
            .exp()
            .reshape([n])
    }

    pub fn density(&self, points: Tensor<2>, config: &FieldConfig) -> Tensor<1> {
        Self::density_of(self.geometry(points, config))
    }

    /// (σ [n], rgb [n,3]) at `points` [n,3] in [0,1]³ seen along directions encoded as `sh` [n,16].
    pub fn forward(
        &self,
        points: Tensor<2>,
        sh: Tensor<2>,
        config: &FieldConfig,
    ) -> (Tensor<1>, Tensor<2>) {
        let n = points.dims()[0];
        let encoded = self.grid.forward(points, config.grid);
        let out = radiance_mlp(encoded, sh, self.mlp_weights());
        (
            out.clone().narrow(1, 0, 1).reshape([n]),
            out.narrow(1, 1, 3),
        )
    }

    /// The five layers' weights, [inputs, outputs] each, in [`radiance_mlp`]'s order.
    fn mlp_weights(&self) -> [Tensor<2>; 5] {
        [
            &self.density_in,
            &self.density_out,
            &self.colour_in,
            &self.colour_hidden,
            &self.colour_out,
        ]
        .map(|l| l.weight.val())
    }
}

/// Real spherical harmonics up to degree 4 of a unit direction (instant-ngp's ordering and signs).
pub fn spherical_harmonics(d: [f32; 3]) -> [f32; SH_COEFFS] {
    let [x, y, z] = d;
    let (xx, yy, zz) = (x * x, y * y, z * z);
    let (xy, yz, xz) = (x * y, y * z, x * z);
    [
        0.282_094_8,
        -0.488_602_52 * y,
        0.488_602_52 * z,
        -0.488_602_52 * x,
        1.092_548_4 * xy,
        -1.092_548_4 * yz,
        0.946_174_7 * zz - 0.315_391_57,
        -1.092_548_4 * xz,
        0.546_274_2 * (xx - yy),
        0.590_043_6 * y * (-3.0 * xx + yy),
        2.890_611_4 * xy * z,
        0.457_045_8 * y * (1.0 - 5.0 * zz),
        0.373_176_33 * z * (5.0 * zz - 3.0),
        0.457_045_8 * x * (1.0 - 5.0 * zz),
        1.445_305_7 * z * (xx - yy),
        0.590_043_6 * x * (-xx + 3.0 * yy),
    ]
}
