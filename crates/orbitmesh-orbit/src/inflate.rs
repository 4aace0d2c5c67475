//! `inflate`, the weight-free orbit generator: a classical baseline, not a learned model. The
//! silhouette is inflated into a solid ([`InflateProfile`]: each row revolved about its middle, or
//! a circular profile over the distance to the outline), placed where the input camera sees it, coloured in front by the image and behind by the same colours (seen from behind,
//! the object shows the input mirrored, as a symmetric object would), and rendered from every view
//! of the orbit. It guesses nothing the silhouette does not say: concavities, hidden parts and the
//! true depth are beyond it.

use std::time::Instant;

use image::RgbaImage;
use nalgebra::Vector3;
use orbitmesh_geom::TriMesh;
use orbitmesh_render::camera::Intrinsics;
use orbitmesh_render::shade::shade_rgba;
use orbitmesh_render::{Background, Camera, OrbitView, Rasterizer, Scene};

use crate::generator::{GeneratedOrbit, OrbitError, OrbitGenerator, OrbitProgress};

/// Grid cells per side of the proxy (the prepared image is sampled on this grid).
const GRID: u32 = 192;
const SSAA: u32 = 2;

pub struct Inflate {
    /// Depth of the solid relative to its profile (1 = as deep as the profile makes it).
    pub thickness: f32,
    pub profile: InflateProfile,
}

impl Default for Inflate {
    fn default() -> Self {
        Inflate {
            thickness: 1.0,
            profile: InflateProfile::default(),
        }
    }
}

/// How far the proxy reaches in front of and behind each pixel of the silhouette.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InflateProfile {
    /// The height grows with the distance to the outline in a circular profile: a disc becomes a
    /// ball, and the solid is as deep as the silhouette is thick.
    #[default]
    Round,
    /// Each horizontal run of the silhouette is a slice of a solid of revolution about a vertical
    /// axis through the run's middle: as deep as it is wide, as bowls, vases and bottles seen
    /// from the side are.
    Revolved,
}

impl InflateProfile {
    /// Its name on the command line and in stage records.
    pub fn name(self) -> &'static str {
        match self {
            InflateProfile::Round => "round",
            InflateProfile::Revolved => "revolved",
        }
    }

    /// Each pixel's height over the plane through the object, in grid pixels, 0 on the outline.
    fn heights(self, mask: &[bool], n: usize) -> Vec<f32> {
        match self {
            InflateProfile::Round => {
                let dist = distance_inside(mask, n);
                let d_max = dist.iter().cloned().fold(0.0f32, f32::max).max(1.0);
                dist.iter()
                    .map(|&d| (d * (2.0 * d_max - d)).max(0.0).sqrt())
                    .collect()
            }
            InflateProfile::Revolved => {
                let mut heights = vec![0f32; n * n];
                for (row, out) in mask.chunks(n).zip(heights.chunks_mut(n)) {
                    let mut x = 0;
                    while x < n {
                        if !row[x] {
                            x += 1;
                            continue;
                        }
                        let start = x;
                        while x < n && row[x] {
                            x += 1;
                        }
                        // The run's end pixels sit on the outline, at height 0.
                        let centre = (start + x) as f32 / 2.0;
                        let radius = (x - start) as f32 / 2.0 - 0.5;
                        for (i, h) in out.iter_mut().enumerate().take(x).skip(start) {
                            let u = i as f32 + 0.5 - centre;
                            *h = (radius * radius - u * u).max(0.0).sqrt();
                        }
                    }
                }
                heights
            }
        }
    }
}

/// Two-pass chamfer (3-4) distance to the nearest pixel outside the mask, in pixels; pixels on
/// the outline get 0.
fn distance_inside(mask: &[bool], n: usize) -> Vec<f32> {
    let big = u32::MAX / 2;
    let mut d: Vec<u32> = mask.iter().map(|&m| if m { big } else { 0 }).collect();
    let at = |x: i64, y: i64, d: &Vec<u32>| {
        if x < 0 || y < 0 || x >= n as i64 || y >= n as i64 {
            0
        } else {
            d[y as usize * n + x as usize]
        }
    };
    // A forward raster pass looking at the already-visited neighbours above and to the left,
    // then the same backwards with the offsets mirrored.
    let forward: Vec<usize> = (0..n * n).collect();
    for (order, sign) in [
        (forward.clone(), 1i64),
        (forward.into_iter().rev().collect(), -1),
    ] {
        for i in order {
            if d[i] == 0 {
                continue;
            }
            let (x, y) = ((i % n) as i64, (i / n) as i64);
            let best = [(-1, 0, 3), (0, -1, 3), (-1, -1, 4), (1, -1, 4)]
                .iter()
                .map(|&(dx, dy, w)| at(x + sign * dx, y + sign * dy, &d).saturating_add(w))
                .min()
                .unwrap_or(big);
            d[i] = d[i].min(best);
        }
    }
    // Outline pixels (distance one step) become 0 so front and back meet there.
    d.iter().map(|&v| (v as f32 / 3.0 - 1.0).max(0.0)).collect()
}

/// The inflated proxy of a prepared image seen from `input`, in the object frame.
pub fn inflate_proxy(
    prepared: &RgbaImage,
    input: &Camera,
    thickness: f32,
    profile: InflateProfile,
) -> Result<TriMesh, OrbitError> {
    let n = GRID as usize;
    let (w, h) = prepared.dimensions();
    let sample = |gx: usize, gy: usize| {
        let x = ((gx as f32 + 0.5) / n as f32 * w as f32) as u32;
        let y = ((gy as f32 + 0.5) / n as f32 * h as f32) as u32;
        *prepared.get_pixel(x.min(w - 1), y.min(h - 1))
    };
    let mask: Vec<bool> = (0..n * n).map(|i| sample(i % n, i / n)[3] >= 128).collect();
    if mask.iter().filter(|&&m| m).count() < 16 {
        return Err(OrbitError::Input(
            "the prepared image shows almost no object".into(),
        ));
    }
    let heights = profile.heights(&mask, n);

    // Where a grid pixel lies on the plane through the origin facing the input camera, and how
    // long one grid pixel is there.
    let k = input.intrinsics;
    let eye = input.position();
    let back = input.camera_to_world.fixed_view::<3, 1>(0, 2).into_owned();
    let pixel = (eye.norm() / k.fx) as f32 * (w as f32 / n as f32);
    let on_plane = |gx: usize, gy: usize| -> Vector3<f64> {
        let x = (gx as f64 + 0.5) / n as f64 * f64::from(w);
        let y = (gy as f64 + 0.5) / n as f64 * f64::from(h);
        let (o, dir) = input.ray(x, y);
        // o + t·dir on the plane back·p = 0.
        let t = -o.dot(&back) / dir.dot(&back);
        o + t * dir
    };

    let mut mesh = TriMesh::default();
    let mut colors = Vec::new();
    let mut front = vec![u32::MAX; n * n];
    let mut rear = vec![u32::MAX; n * n];
    for gy in 0..n {
        for gx in 0..n {
            let i = gy * n + gx;
            if !mask[i] {
                continue;
            }
            let height = thickness * heights[i] * pixel;
            let p = on_plane(gx, gy);
            let c = sample(gx, gy);
            let rgb = [0, 1, 2].map(|k| f32::from(c[k]) / 255.0);
            let mut add = |offset: f32| {
                let q = p + back * f64::from(offset);
                mesh.positions.push([q.x as f32, q.y as f32, q.z as f32]);
                colors.push(rgb);
                mesh.positions.len() as u32 - 1
            };
            front[i] = add(height);
            rear[i] = if height > 0.0 { add(-height) } else { front[i] };
        }
    }
    for gy in 0..n - 1 {
        for gx in 0..n - 1 {
            let q = [
                gy * n + gx,
                gy * n + gx + 1,
                (gy + 1) * n + gx + 1,
                (gy + 1) * n + gx,
            ];
            if q.iter().any(|&i| !mask[i]) {
                continue;
            }
            // Grid y runs down the image: (x, y) → (x+1, y) → (x+1, y+1) is clockwise on screen,
            // so the front takes the reverse order to face the camera.
            let [a, b, c, d] = q.map(|i| front[i]);
            mesh.faces.push([a, c, b]);
            mesh.faces.push([a, d, c]);
            let [a, b, c, d] = q.map(|i| rear[i]);
            mesh.faces.push([a, b, c]);
            mesh.faces.push([a, c, d]);
        }
    }
    mesh.colors = Some(colors);
    Ok(mesh)
}

impl OrbitGenerator for Inflate {
    fn name(&self) -> &'static str {
        "inflate"
    }

    fn describe(&self) -> &'static str {
        "inflate: the weight-free classical baseline (the silhouette inflated into a solid), \
         not a diffusion model"
    }

    fn generate(
        &self,
        prepared: &RgbaImage,
        input_view: OrbitView,
        views: &[OrbitView],
        intrinsics: Intrinsics,
        rasterizer: &Rasterizer,
        progress: &mut dyn FnMut(OrbitProgress),
    ) -> Result<GeneratedOrbit, OrbitError> {
        let total = views.len();
        let (w, h) = prepared.dimensions();
        let input = input_view.camera(Intrinsics::from_fov(intrinsics.fov_x_deg(), w, h));
        let proxy = inflate_proxy(prepared, &input, self.thickness, self.profile)?;
        let scene = Scene::new(&proxy, &mut Vec::new())?;
        let mut since = Instant::now();
        let frames = views
            .iter()
            .enumerate()
            .map(|(k, v)| {
                let cam = v.camera(intrinsics.scaled(SSAA));
                let vis = rasterizer.rasterize(&scene, &cam)?;
                let frame = shade_rgba(&scene, &vis, &cam, SSAA, Background::Transparent);
                progress(OrbitProgress {
                    part: format!("frame {}", k + 1),
                    done: k + 1,
                    total,
                    seconds: since.elapsed().as_secs_f64(),
                });
                since = Instant::now();
                Ok(frame)
            })
            .collect::<Result<_, OrbitError>>()?;
        Ok(GeneratedOrbit {
            frames,
            warnings: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orbitmesh_render::camera::SV3D_FOV_DEG;

    fn disc(size: u32, r: f32) -> RgbaImage {
        RgbaImage::from_fn(size, size, |x, y| {
            let c = size as f32 / 2.0;
            let d = ((x as f32 + 0.5 - c).powi(2) + (y as f32 + 0.5 - c).powi(2)).sqrt();
            if d < r {
                image::Rgba([200, 60, 40, 255])
            } else {
                image::Rgba([0; 4])
            }
        })
    }

    /// The input view of these tests: level, on +X, at SV3D's radius.
    const FRONT: OrbitView = OrbitView {
        elevation_deg: 0.0,
        azimuth_deg: 0.0,
        radius: 2.0,
    };

    const PROFILES: [InflateProfile; 2] = [InflateProfile::Round, InflateProfile::Revolved];

    /// Both profiles make a ball of a disc: a chord revolved about its middle is a slice of it.
    #[test]
    fn a_disc_inflates_into_a_ball_that_looks_the_same_from_everywhere() {
        for profile in PROFILES {
            disc_becomes_a_ball(profile);
        }
    }

    fn disc_becomes_a_ball(profile: InflateProfile) {
        let k = Intrinsics::from_fov(SV3D_FOV_DEG, 96, 96);
        let input = FRONT;
        let prepared = disc(96, 40.0);
        let proxy = inflate_proxy(&prepared, &input.camera(k), 1.0, profile).unwrap();
        let b = proxy.bounds();
        let e = b.extent();
        // As deep (x, towards the camera at +X) as wide (y) and tall (z).
        assert!(
            (e[0] - e[1]).abs() / e[1] < 0.1 && (e[2] - e[1]).abs() / e[1] < 0.1,
            "{e:?}"
        );
        let views: Vec<OrbitView> = [0.0, 90.0, 180.0]
            .map(|azimuth_deg| OrbitView {
                azimuth_deg,
                ..input
            })
            .to_vec();
        let inflate = Inflate {
            profile,
            ..Default::default()
        };
        let frames = inflate
            .generate(&prepared, input, &views, k, &Rasterizer::Cpu, &mut |_| {})
            .unwrap()
            .frames;
        let covered = |f: &RgbaImage| f.pixels().filter(|p| p[3] > 127).count() as f64;
        let front = covered(&frames[0]);
        // The disc's area; a true ball of its size, nearer the camera at its rim, covers 6.9%
        // more in this perspective (the revolved profile's rows rise at the top and bottom).
        let expected = std::f64::consts::PI * 40.0 * 40.0;
        assert!(
            (front - expected).abs() / expected < 0.08,
            "{front} vs {expected}"
        );
        for f in &frames[1..] {
            assert!((covered(f) - front).abs() / front < 0.1);
        }
        // The input view shows the input's colour.
        assert_eq!(frames[0].get_pixel(48, 48).0, [200, 60, 40, 255]);
    }

    /// A square revolved is a cylinder, as deep at its top and bottom as in its middle; the round
    /// profile thins out towards every edge.
    #[test]
    fn a_square_revolves_into_a_cylinder() {
        let k = Intrinsics::from_fov(SV3D_FOV_DEG, 96, 96);
        let cam = FRONT.camera(k);
        let square = RgbaImage::from_fn(96, 96, |x, y| {
            let inside = (18..78).contains(&x) && (18..78).contains(&y);
            image::Rgba([90, 90, 90, if inside { 255 } else { 0 }])
        });
        // The depth (x, towards the camera) reached near the top, against the half-width.
        let depth_near_top = |profile| {
            let proxy = inflate_proxy(&square, &cam, 1.0, profile).unwrap();
            let b = proxy.bounds();
            let top = b.max[2] - 0.1 * b.extent()[2];
            let depth = proxy
                .positions
                .iter()
                .filter(|p| f64::from(p[2]) > top)
                .fold(0f32, |m, p| m.max(p[0].abs()));
            f64::from(depth) / (0.5 * b.extent()[1])
        };
        let revolved = depth_near_top(InflateProfile::Revolved);
        let round = depth_near_top(InflateProfile::Round);
        assert!(revolved > 0.95, "revolved: {revolved}");
        assert!(round < 0.7, "round: {round}");
    }

    #[test]
    fn an_empty_image_is_refused() {
        let k = Intrinsics::from_fov(SV3D_FOV_DEG, 32, 32);
        let cam = FRONT.camera(k);
        assert!(inflate_proxy(&RgbaImage::new(32, 32), &cam, 1.0, InflateProfile::Round).is_err());
    }
}
