//! Seeded area-uniform sampling of a mesh surface.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::mesh::{TriMesh, area_vector, norm};

/// Points on a surface with the unit normal of the face each one lies on.
#[derive(Debug, Clone, Default)]
pub struct SurfaceSamples {
    pub points: Vec<[f32; 3]>,
    pub normals: Vec<[f32; 3]>,
}

/// How the points of `sample_surface` are placed. Both give points uniformly distributed over the
/// surface area; they differ in how evenly one cloud covers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sampling {
    /// Independent draws, as trimesh's `sample_surface` and PyTorch3D's
    /// `sample_points_from_meshes` do: the estimator behind published Chamfer figures, so the
    /// default.
    #[default]
    Independent,
    /// Point k sits at (k + offset)/count along the cumulative area (systematic sampling) with
    /// barycentric coordinates from the seeded R2 low-discrepancy sequence. The cloud covers the
    /// surface evenly, so metrics carry less sampling noise, and Chamfer distances between close
    /// surfaces come out a few percent below the independent estimator's.
    Stratified,
}

/// Additive recurrence of the R2 low-discrepancy sequence (Roberts 2018): 1/g and 1/g² for the
/// plastic number g.
const R2_STEP: [f64; 2] = [0.754_877_666_246_692_7, 0.569_840_290_998_053_2];

/// Independent draws come in fixed-size chunks, each from its own ChaCha stream of the seed.
const CHUNK: usize = 4096;

/// `count` points, uniform over the surface area, reproducible for a given `seed` whatever the
/// number of threads (every point depends only on the seed and its index).
pub fn sample_surface(mesh: &TriMesh, count: usize, seed: u64, mode: Sampling) -> SurfaceSamples {
    let faces = mesh.faces.len();
    if faces == 0 || count == 0 {
        return SurfaceSamples::default();
    }
    let area_vectors: Vec<[f64; 3]> = (0..faces).map(|f| area_vector(&mesh.triangle(f))).collect();
    let mut cdf = Vec::with_capacity(faces);
    let mut total = 0.0;
    for a in &area_vectors {
        total += norm(*a);
        cdf.push(total);
    }
    // A mesh of only degenerate faces has no area to sample by: spread the points over the faces
    // evenly rather than failing.
    let (cdf, total) = if total > 0.0 {
        (cdf, total)
    } else {
        ((1..=faces).map(|f| f as f64).collect(), faces as f64)
    };
    // The point at cumulative area `u` with in-triangle coordinates (s, t) in the unit square.
    let place = |u: f64, s: f64, t: f64| {
        let f = cdf.partition_point(|&c| c <= u).min(faces - 1);
        let [a, b, c] = mesh.triangle(f);
        let r1 = s.sqrt();
        let (wa, wb, wc) = (1.0 - r1, r1 * (1.0 - t), r1 * t);
        let point = [0, 1, 2].map(|i| (wa * a[i] + wb * b[i] + wc * c[i]) as f32);
        let av = area_vectors[f];
        let len = norm(av);
        let normal = if len > 0.0 {
            av.map(|v| (v / len) as f32)
        } else {
            [0.0; 3]
        };
        (point, normal)
    };

    let mut out = vec![([0.0f32; 3], [0.0f32; 3]); count];
    match mode {
        Sampling::Independent => out
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(chunk, out)| {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                rng.set_stream(chunk as u64);
                for o in out {
                    let u = rng.random::<f64>() * total;
                    *o = place(u, rng.random(), rng.random());
                }
            }),
        Sampling::Stratified => {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let offset: f64 = rng.random();
            let shift: [f64; 2] = [rng.random(), rng.random()];
            out.par_iter_mut()
                .enumerate()
                .with_min_len(CHUNK)
                .for_each(|(k, o)| {
                    let u = (k as f64 + offset) / count as f64 * total;
                    let [s, t] = [0, 1].map(|i| (shift[i] + k as f64 * R2_STEP[i]).fract());
                    *o = place(u, s, t);
                })
        }
    }
    let (points, normals) = out.into_iter().unzip();
    SurfaceSamples { points, normals }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shapes;

    #[test]
    fn same_seed_same_points_whatever_the_thread_count() {
        let mesh = shapes::uv_sphere(0.5, 24, 48);
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let three = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for mode in [Sampling::Independent, Sampling::Stratified] {
            let a = one.install(|| sample_surface(&mesh, 20_000, 7, mode));
            let b = three.install(|| sample_surface(&mesh, 20_000, 7, mode));
            assert_eq!(a.points, b.points);
            let c = sample_surface(&mesh, 20_000, 8, mode);
            assert_ne!(a.points, c.points);
        }
    }

    #[test]
    fn samples_are_area_uniform() {
        // Two faces, one with three times the area of the other.
        let mesh = TriMesh::new(
            vec![
                [0.0, 0.0, 0.0],
                [1.0, 0.0, 0.0],
                [0.0, 1.0, 0.0],
                [10.0, 0.0, 0.0],
                [13.0, 0.0, 0.0],
                [10.0, 1.0, 0.0],
            ],
            vec![[0, 1, 2], [3, 4, 5]],
        );
        for (mode, tolerance) in [(Sampling::Independent, 0.01), (Sampling::Stratified, 0.001)] {
            let s = sample_surface(&mesh, 40_000, 1, mode);
            let big = s.points.iter().filter(|p| p[0] >= 10.0).count() as f64 / 40_000.0;
            assert!(
                (big - 0.75).abs() < tolerance,
                "{mode:?}: fraction on the big face {big}"
            );
            // Uniform inside a face too: a quarter of the small face's points in its corner triangle
            // of half the side.
            let small: Vec<_> = s.points.iter().filter(|p| p[0] < 10.0).collect();
            let corner = small.iter().filter(|p| p[0] + p[1] < 0.5).count() as f64;
            assert!((corner / small.len() as f64 - 0.25).abs() < 0.01);
            // Inside the triangles, with the +Z normal.
            assert!(s.points.iter().all(|p| p[2] == 0.0 && p[1] >= 0.0));
            assert!(s.normals.iter().all(|n| n == &[0.0, 0.0, 1.0]));
        }
    }
}
