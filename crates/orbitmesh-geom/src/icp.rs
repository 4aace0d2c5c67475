//! Similarity ICP (rotation, translation and one uniform scale): aligns a prediction made in an
//! unknown frame to the ground truth before measuring it.

use nalgebra::{Matrix3, Rotation3, Similarity3, Translation3, UnitQuaternion, Vector3};

use crate::frame::transform_point;
use crate::nearest::PointIndex;

#[derive(Debug, Clone)]
pub struct IcpResult {
    /// Maps source points onto the target.
    pub transform: Similarity3<f64>,
    pub iterations: usize,
    /// Root-mean-square distance of the symmetric correspondences at the end.
    pub rms: f64,
}

/// The least-squares similarity mapping `from[i]` onto `to[i]` (Umeyama 1991).
pub fn umeyama(from: &[Vector3<f64>], to: &[Vector3<f64>]) -> Similarity3<f64> {
    let n = from.len().max(1) as f64;
    let mu_f = from.iter().sum::<Vector3<f64>>() / n;
    let mu_t = to.iter().sum::<Vector3<f64>>() / n;
    let mut cov = Matrix3::zeros();
    let mut var_f = 0.0;
    for (f, t) in from.iter().zip(to) {
        let (df, dt) = (f - mu_f, t - mu_t);
        cov += dt * df.transpose();
        var_f += df.norm_squared();
    }
    cov /= n;
    var_f /= n;
    let svd = cov.svd(true, true);
    let (Some(u), Some(v_t)) = (svd.u, svd.v_t) else {
        return Similarity3::identity();
    };
    let mut s = Matrix3::identity();
    if (u.determinant() * v_t.determinant()) < 0.0 {
        s[(2, 2)] = -1.0;
    }
    let r = u * s * v_t;
    let scale = if var_f > 0.0 {
        (Matrix3::from_diagonal(&svd.singular_values) * s).trace() / var_f
    } else {
        1.0
    };
    let rotation = UnitQuaternion::from_rotation_matrix(&Rotation3::from_matrix_unchecked(r));
    let translation = mu_t - scale * (rotation * mu_f);
    Similarity3::from_parts(Translation3::from(translation), rotation, scale)
}

fn vector(p: [f32; 3]) -> Vector3<f64> {
    Vector3::new(p[0].into(), p[1].into(), p[2].into())
}

/// Aligns `source` to `target` with correspondences taken both ways (source → target and target →
/// source), which keeps the scale from collapsing as one-way scale ICP can.
pub fn icp_similarity(
    source: &[[f32; 3]],
    target: &[[f32; 3]],
    max_iterations: usize,
) -> IcpResult {
    let target_index = PointIndex::new(target);
    let mut transform = Similarity3::identity();
    let mut rms = f64::INFINITY;
    let mut iterations = 0;
    for _ in 0..max_iterations {
        iterations += 1;
        let moved: Vec<[f32; 3]> = source
            .iter()
            .map(|p| transform_point(&transform, *p))
            .collect();
        let moved_index = PointIndex::new(&moved);
        let forward = target_index.nearest_all(&moved);
        let backward = moved_index.nearest_all(target);
        let mut from = Vec::with_capacity(forward.len() + backward.len());
        let mut to = Vec::with_capacity(from.capacity());
        for (p, n) in moved.iter().zip(&forward) {
            from.push(vector(*p));
            to.push(vector(target[n.index as usize]));
        }
        for (q, n) in target.iter().zip(&backward) {
            from.push(vector(moved[n.index as usize]));
            to.push(vector(*q));
        }
        let sq: f64 = forward
            .iter()
            .chain(&backward)
            .map(|n| f64::from(n.distance).powi(2))
            .sum();
        let new_rms = (sq / (forward.len() + backward.len()).max(1) as f64).sqrt();
        let step = umeyama(&from, &to);
        transform = step * transform;
        let converged = (rms - new_rms).abs() < 1e-7 * new_rms.max(1e-12)
            || (step.isometry.translation.vector.norm() < 1e-9
                && step.isometry.rotation.angle() < 1e-9
                && (step.scaling() - 1.0).abs() < 1e-9);
        rms = new_rms;
        if converged {
            break;
        }
    }
    IcpResult {
        transform,
        iterations,
        rms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn umeyama_recovers_a_known_similarity() {
        let truth = Similarity3::from_parts(
            Translation3::new(0.1, -0.2, 0.3),
            UnitQuaternion::from_euler_angles(0.3, -0.2, 0.5),
            1.7,
        );
        let from: Vec<Vector3<f64>> = (0..50)
            .map(|i| Vector3::new((i as f64).sin(), (i as f64 * 0.7).cos(), i as f64 * 0.01))
            .collect();
        let to: Vec<Vector3<f64>> = from
            .iter()
            .map(|p| truth.transform_point(&(*p).into()).coords)
            .collect();
        let est = umeyama(&from, &to);
        assert!((est.scaling() - 1.7).abs() < 1e-9);
        assert!((est.to_homogeneous() - truth.to_homogeneous()).abs().max() < 1e-9);
    }
}
