//! The occupancy grid over the unit cube [0,1]³ (the object frame shifted by +0.5): which cells
//! may hold density, so ray marching spends no samples on empty space. Cells the visual hull
//! carves away are never occupied; the others track the field's density with instant-ngp's
//! decaying maximum.

use rand::Rng;

use crate::ops::composite::RayPacking;

#[derive(Debug, Clone)]
pub struct OccupancyGrid {
    pub resolution: usize,
    /// Decayed maximum of the field's density seen in each cell.
    pub density: Vec<f32>,
    /// Cells that may ever be occupied (inside the dilated hull).
    allowed: Vec<bool>,
    occupied: Vec<bool>,
}

/// Where a ray meets the unit cube: (t_near, t_far), or None when it misses.
pub fn unit_cube_span(origin: [f32; 3], dir: [f32; 3]) -> Option<(f32, f32)> {
    let (mut near, mut far) = (0f32, f32::INFINITY);
    for a in 0..3 {
        let inv = 1.0 / if dir[a].abs() < 1e-9 { 1e-9 } else { dir[a] };
        let (t0, t1) = ((0.0 - origin[a]) * inv, (1.0 - origin[a]) * inv);
        near = near.max(t0.min(t1));
        far = far.min(t0.max(t1));
    }
    (far > near).then_some((near, far))
}

impl OccupancyGrid {
    /// Every allowed cell starts occupied; `allowed` is indexed like [`Self::cell_index`].
    pub fn new(resolution: usize, allowed: Vec<bool>) -> Self {
        assert_eq!(allowed.len(), resolution.pow(3));
        OccupancyGrid {
            resolution,
            density: vec![0.0; allowed.len()],
            occupied: allowed.clone(),
            allowed,
        }
    }

    pub fn cell_index(&self, i: usize, j: usize, k: usize) -> usize {
        (k * self.resolution + j) * self.resolution + i
    }

    /// Cell centre in [0,1]³.
    pub fn cell_centre(&self, index: usize) -> [f32; 3] {
        let r = self.resolution;
        let (i, j, k) = (index % r, index / r % r, index / (r * r));
        [i, j, k].map(|c| (c as f32 + 0.5) / r as f32)
    }

    pub fn cell_of(&self, p: [f32; 3]) -> Option<usize> {
        let r = self.resolution as f32;
        let c = p.map(|v| (v * r).floor());
        if c.iter().any(|v| *v < 0.0 || *v >= r) {
            return None;
        }
        Some(self.cell_index(c[0] as usize, c[1] as usize, c[2] as usize))
    }

    pub fn is_occupied(&self, p: [f32; 3]) -> bool {
        self.cell_of(p).is_some_and(|c| self.occupied[c])
    }

    pub fn allowed_cells(&self) -> Vec<u32> {
        cells_where(&self.allowed)
    }

    pub fn occupied_cells(&self) -> Vec<u32> {
        cells_where(&self.occupied)
    }

    pub fn occupied_fraction(&self) -> f32 {
        self.occupied.iter().filter(|o| **o).count() as f32 / self.occupied.len() as f32
    }

    /// Folds in fresh density estimates for some cells: every cell decays by `decay`, the measured
    /// ones take the maximum with their new value; a cell is occupied when its optical thickness
    /// over one marching step reaches min(`threshold`, the mean).
    pub fn update(
        &mut self,
        cells: &[u32],
        densities: &[f32],
        decay: f32,
        step: f32,
        threshold: f32,
    ) {
        for d in &mut self.density {
            *d *= decay;
        }
        for (c, d) in cells.iter().zip(densities) {
            let slot = &mut self.density[*c as usize];
            *slot = slot.max(*d);
        }
        let allowed = self.allowed.iter().filter(|a| **a).count().max(1);
        let mean = self
            .density
            .iter()
            .zip(&self.allowed)
            .filter(|(_, a)| **a)
            .map(|(d, _)| *d as f64)
            .sum::<f64>()
            / allowed as f64;
        let cut = threshold.min(mean as f32 * step);
        for ((o, d), a) in self
            .occupied
            .iter_mut()
            .zip(&self.density)
            .zip(&self.allowed)
        {
            *o = *a && *d * step >= cut;
        }
    }

    /// Random points, one in each of `cells`, for a density update.
    pub fn jittered_points(&self, cells: &[u32], rng: &mut impl Rng) -> Vec<f32> {
        let r = self.resolution as f32;
        let mut points = Vec::with_capacity(cells.len() * 3);
        for c in cells {
            let centre = self.cell_centre(*c as usize);
            for v in centre {
                points.push(v + (rng.random::<f32>() - 0.5) / r);
            }
        }
        points
    }
}

fn cells_where(mask: &[bool]) -> Vec<u32> {
    (0..mask.len() as u32)
        .filter(|c| mask[*c as usize])
        .collect()
}

/// The samples of a batch of rays: points in [0,1]³ and directions, packed per ray.
#[derive(Debug, Clone, Default)]
pub struct MarchedSamples {
    pub points: Vec<f32>,
    pub dirs: Vec<f32>,
    /// Which ray of the batch each sample belongs to.
    pub ray_of: Vec<u32>,
    pub offsets: Vec<u32>,
    pub deltas: Vec<f32>,
}

impl MarchedSamples {
    pub fn len(&self) -> usize {
        self.deltas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.deltas.is_empty()
    }

    pub fn packing(&self) -> RayPacking {
        RayPacking {
            offsets: self.offsets.clone(),
            deltas: self.deltas.clone(),
        }
    }
}

/// Marches rays (origins and unit directions in the unit-cube frame) with a fixed step, emitting a
/// sample at each step that lands in an occupied cell; `offset` ∈ [0,1) shifts the first step
/// (random per ray when training, so every depth gets sampled).
pub fn march(
    grid: &OccupancyGrid,
    rays: &[([f32; 3], [f32; 3])],
    step: f32,
    max_per_ray: usize,
    offsets: &[f32],
) -> MarchedSamples {
    let mut out = MarchedSamples {
        offsets: vec![0],
        ..Default::default()
    };
    for (r, ((o, d), jitter)) in rays.iter().zip(offsets).enumerate() {
        if let Some((near, far)) = unit_cube_span(*o, *d) {
            let mut t = near + jitter * step;
            let mut taken = 0;
            while t < far && taken < max_per_ray {
                let p = [0, 1, 2].map(|a| o[a] + t * d[a]);
                if grid.is_occupied(p) {
                    out.points.extend_from_slice(&p);
                    out.dirs.extend_from_slice(d);
                    out.ray_of.push(r as u32);
                    out.deltas.push(step);
                    taken += 1;
                }
                t += step;
            }
        }
        out.offsets.push(out.deltas.len() as u32);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rays_meet_the_unit_cube_where_expected() {
        let (near, far) = unit_cube_span([0.5, 0.5, -1.0], [0.0, 0.0, 1.0]).unwrap();
        assert!((near - 1.0).abs() < 1e-6 && (far - 2.0).abs() < 1e-6);
        assert!(unit_cube_span([2.0, 2.0, -1.0], [0.0, 0.0, 1.0]).is_none());
        // Pointing away from the cube.
        assert!(unit_cube_span([0.5, 0.5, -1.0], [0.0, 0.0, -1.0]).is_none());
    }

    #[test]
    fn marching_samples_only_occupied_cells() {
        let r = 8;
        // Only the cells with i == 4 (x in [0.5, 0.625)) may be occupied.
        let allowed: Vec<bool> = (0..r * r * r).map(|c| c % r == 4).collect();
        let grid = OccupancyGrid::new(r, allowed);
        let rays = [
            ([-1.0, 0.3, 0.3], [1.0, 0.0, 0.0]),
            ([0.3, -1.0, 0.3], [0.0, 1.0, 0.0]),
        ];
        let step = 0.01;
        let s = march(&grid, &rays, step, 1000, &[0.5, 0.5]);
        // The x ray crosses the slab (0.125 wide): about 12 samples; the y ray runs at x = 0.3.
        let first = (s.offsets[1] - s.offsets[0]) as usize;
        assert!((12..=13).contains(&first), "{first}");
        assert_eq!(s.offsets[2], s.offsets[1]);
        for p in s.points.chunks_exact(3) {
            assert!((0.5..0.625).contains(&p[0]));
        }
    }

    #[test]
    fn density_updates_decay_and_threshold() {
        let r = 4;
        let mut grid = OccupancyGrid::new(r, vec![true; r * r * r]);
        let all: Vec<u32> = (0..(r * r * r) as u32).collect();
        let mut density = vec![0.0; all.len()];
        density[5] = 100.0;
        grid.update(&all, &density, 0.95, 0.01, 0.01);
        assert!(grid.is_occupied(grid.cell_centre(5)));
        assert!(!grid.is_occupied(grid.cell_centre(6)));
        // Without new measurements the density decays until the cell empties.
        for _ in 0..200 {
            grid.update(&[], &[], 0.95, 0.01, 0.01);
        }
        assert!(grid.density[5] < 100.0 * 0.95f32.powi(150));
    }
}
