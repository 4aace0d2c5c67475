//! The CPU twin of compositing: the forward and its backward on slices (rayon, one task per ray),
//! the reference the GPU kernels are tested against, and the Flex backend's implementation of
//! [`CompositeOps`].

use std::sync::Arc;

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::TensorData;
use rayon::prelude::*;

use super::{CompositeOps, RayPacking};
use crate::ops::flex_values;

/// Samples of one ray.
fn span(packing: &RayPacking, r: usize) -> std::ops::Range<usize> {
    packing.offsets[r] as usize..packing.offsets[r + 1] as usize
}

/// CPU forward: `sigma` [n], `rgb` [n,3] → [rays, 4].
pub fn composite_cpu(packing: &RayPacking, sigma: &[f32], rgb: &[f32]) -> Vec<f32> {
    let mut out = vec![0f32; packing.rays() * 4];
    out.par_chunks_mut(4).enumerate().for_each(|(r, o)| {
        let mut transmittance = 1f32;
        for i in span(packing, r) {
            let alpha = 1.0 - (-sigma[i] * packing.deltas[i]).exp();
            let w = transmittance * alpha;
            for c in 0..3 {
                o[c] += w * rgb[3 * i + c];
            }
            o[3] += w;
            transmittance *= 1.0 - alpha;
        }
    });
    out
}

/// CPU backward: (∂L/∂σ [n], ∂L/∂rgb [n,3]) from ∂L/∂out [rays,4] and the forward's output.
///
/// With C≤ᵢ the colour accumulated up to and including sample i,
/// ∂C/∂σᵢ = δᵢ·(Tᵢ₊₁·cᵢ − (C − C≤ᵢ)), and likewise for A with c = 1.
pub fn composite_backward_cpu(
    packing: &RayPacking,
    sigma: &[f32],
    rgb: &[f32],
    out: &[f32],
    grad_out: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let mut grad_sigma = vec![0f32; sigma.len()];
    let mut grad_rgb = vec![0f32; rgb.len()];
    // Rays own disjoint sample ranges: split both outputs along the offsets.
    let mut sigma_parts = Vec::with_capacity(packing.rays());
    let mut rgb_parts = Vec::with_capacity(packing.rays());
    let (mut gs, mut gc) = (grad_sigma.as_mut_slice(), grad_rgb.as_mut_slice());
    for r in 0..packing.rays() {
        let n = span(packing, r).len();
        let (a, b) = gs.split_at_mut(n);
        let (c, d) = gc.split_at_mut(3 * n);
        sigma_parts.push(a);
        rgb_parts.push(c);
        gs = b;
        gc = d;
    }
    sigma_parts
        .into_par_iter()
        .zip(rgb_parts)
        .enumerate()
        .for_each(|(r, (gs, gc))| {
            let total = &out[4 * r..4 * r + 4];
            let g = &grad_out[4 * r..4 * r + 4];
            let mut transmittance = 1f32;
            let mut acc = [0f32; 4];
            for (k, i) in span(packing, r).enumerate() {
                let alpha = 1.0 - (-sigma[i] * packing.deltas[i]).exp();
                let w = transmittance * alpha;
                let c = [rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2], 1.0];
                for ch in 0..4 {
                    acc[ch] += w * c[ch];
                }
                transmittance *= 1.0 - alpha;
                let mut d = 0f32;
                for ch in 0..4 {
                    d += g[ch] * (transmittance * c[ch] - (total[ch] - acc[ch]));
                }
                gs[k] = packing.deltas[i] * d;
                for ch in 0..3 {
                    gc[3 * k + ch] = w * g[ch];
                }
            }
        });
    (grad_sigma, grad_rgb)
}

impl CompositeOps for Flex {
    fn composite(sigma: FlexTensor, rgb: FlexTensor, packing: Arc<RayPacking>) -> FlexTensor {
        let (sigma, rgb) = (sigma.to_contiguous(), rgb.to_contiguous());
        let out = composite_cpu(&packing, flex_values(&sigma), flex_values(&rgb));
        FlexTensor::from_data(TensorData::new(out, [packing.rays(), 4]))
    }

    fn composite_backward(
        sigma: FlexTensor,
        rgb: FlexTensor,
        out: FlexTensor,
        grad_out: FlexTensor,
        packing: Arc<RayPacking>,
    ) -> FlexTensor {
        let [sigma, rgb, out, grad_out] = [sigma, rgb, out, grad_out].map(|t| t.to_contiguous());
        let (gs, gc) = composite_backward_cpu(
            &packing,
            flex_values(&sigma),
            flex_values(&rgb),
            flex_values(&out),
            flex_values(&grad_out),
        );
        let mut packed = Vec::with_capacity(gs.len() * 4);
        for (s, c) in gs.iter().zip(gc.chunks_exact(3)) {
            packed.extend_from_slice(&[*s, c[0], c[1], c[2]]);
        }
        FlexTensor::from_data(TensorData::new(packed, [gs.len(), 4]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn gradient_matches_finite_differences_with_ragged_rays() {
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        // Rays of 0, 1, 5 and 30 samples.
        let offsets = vec![0u32, 0, 1, 6, 36];
        let n = 36;
        let packing = RayPacking {
            offsets,
            deltas: (0..n).map(|_| 0.02 + 0.03 * rng.random::<f32>()).collect(),
        };
        let mut sigma: Vec<f32> = (0..n).map(|_| 30.0 * rng.random::<f32>()).collect();
        let mut rgb: Vec<f32> = (0..3 * n).map(|_| rng.random::<f32>()).collect();
        let upstream: Vec<f32> = (0..16).map(|_| rng.random::<f32>() - 0.5).collect();
        let loss = |s: &[f32], c: &[f32]| -> f64 {
            composite_cpu(&packing, s, c)
                .iter()
                .zip(&upstream)
                .map(|(o, u)| f64::from(*o) * f64::from(*u))
                .sum()
        };
        let out = composite_cpu(&packing, &sigma, &rgb);
        assert_eq!(&out[0..4], &[0.0; 4], "a ray without samples is empty");
        let (gs, gc) = composite_backward_cpu(&packing, &sigma, &rgb, &out, &upstream);
        for i in 0..n {
            let h = 1e-2f32;
            let s0 = sigma[i];
            sigma[i] = s0 + h;
            let up = loss(&sigma, &rgb);
            sigma[i] = s0 - h;
            let down = loss(&sigma, &rgb);
            sigma[i] = s0;
            let numeric = (up - down) / (2.0 * f64::from(h));
            assert!(
                (numeric - f64::from(gs[i])).abs() < 2e-3 * (1.0 + numeric.abs()),
                "σ {i}: {} vs {numeric}",
                gs[i]
            );
            let c0 = rgb[3 * i + 1];
            rgb[3 * i + 1] = c0 + h;
            let up = loss(&sigma, &rgb);
            rgb[3 * i + 1] = c0 - h;
            let down = loss(&sigma, &rgb);
            rgb[3 * i + 1] = c0;
            let numeric = (up - down) / (2.0 * f64::from(h));
            assert!(
                (numeric - f64::from(gc[3 * i + 1])).abs() < 2e-3 * (1.0 + numeric.abs()),
                "rgb {i}: {} vs {numeric}",
                gc[3 * i + 1]
            );
        }
    }

    #[test]
    fn an_opaque_sample_hides_what_is_behind_it() {
        let packing = RayPacking {
            offsets: vec![0, 2],
            deltas: vec![1.0, 1.0],
        };
        let out = composite_cpu(&packing, &[1e4, 5.0], &[0.2, 0.4, 0.6, 1.0, 1.0, 1.0]);
        for (o, e) in out.iter().zip([0.2, 0.4, 0.6, 1.0]) {
            assert!((o - e).abs() < 1e-6);
        }
    }
}
