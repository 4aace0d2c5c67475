//! The optimisation: SDF from the coarse mesh, then Adam on the SDF, the deformations and a
//! per-lattice-point colour against the orbit frames (colour and mask), with Laplacian and
//! normal-consistency regularisers, and an optional score-distillation guidance in the last steps.

use std::time::Instant;

use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, IndexingUpdateOp, Tensor, TensorData};
use nalgebra::Vector3;
use orbitmesh_geom::{PointIndex, Sampling, TriMesh, WindingNumber, sample_surface};
use orbitmesh_render::raster::{NO_TRIANGLE, VisibilityBuffer};
use orbitmesh_render::{Camera, Orbit, Rasterizer, Scene, colour_from_frames};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::DmtetError;
use crate::raster::{EdgeFaces, Silhouettes, interpolate, project};
use crate::surface::{EDGE_MARGIN, SurfacePoints, index, lattice, tensor2, to_vec};
use crate::tetgrid::{TetGrid, Topology};

/// The initial SDF is the coarse surface's signed distance in lattice cells, truncated here:
/// far from the surface only the sign matters.
const INIT_TRUNCATION: f32 = 3.0;

/// Points sampled on the coarse surface for the fit steps.
const COARSE_FIT_SAMPLES: usize = 50_000;

/// Serialised, it is part of the fine stage's fingerprint.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RefineConfig {
    /// Cubes per side of the tetrahedral grid.
    pub resolution: usize,
    /// The grid spans [−half, half]³ (objects are normalised to a largest side of 1).
    pub half: f32,
    pub steps: usize,
    /// The first steps fit the surface to the coarse mesh (no frames): marching tetrahedra on
    /// the coarse surface's SDF alone loses what is thinner than a cell.
    pub fit_steps: usize,
    /// Stop early when the optimisation has run this long.
    pub time_budget_s: Option<f64>,
    pub learning_rate: f64,
    pub colour_learning_rate: f64,
    pub views_per_step: usize,
    /// Frames larger than this (longer side, pixels) are shrunk for the losses.
    pub max_side: u32,
    pub rgb_weight: f32,
    pub mask_weight: f32,
    pub laplacian_weight: f32,
    pub normal_weight: f32,
    /// Weight of the pull of the surface no training camera faces towards a membrane spanning
    /// the seen surface around it (see [`unseen_membrane`]).
    pub unseen_weight: f32,
    /// Guidance (when given) acts in this many final steps.
    pub guidance_steps: usize,
    pub guidance_weight: f32,
    pub seed: u64,
}

impl RefineConfig {
    /// The defaults with `steps` in all, a sixth of them fitting the coarse mesh.
    pub fn with_steps(steps: usize) -> Self {
        RefineConfig {
            steps,
            fit_steps: steps / 6,
            ..RefineConfig::default()
        }
    }
}

impl Default for RefineConfig {
    fn default() -> Self {
        RefineConfig {
            resolution: 64,
            half: 0.6,
            steps: 600,
            // A sixth of the steps: on the teapot 100 fit steps took the converted surface from
            // Chamfer 0.0057 back to its NeRF's 0.0051.
            fit_steps: 100,
            time_budget_s: None,
            // In lattice cells per step (DMTet's 0.01 is in object units on a grid of side 2,
            // about a third of its cell). On the 128² oracle orbits (bunny, teapot, bowl, with
            // the unseen prior at 0.03): 0.15 gave Chamfer 0.0057/0.0039/0.0337, 0.08
            // 0.0051/0.0036/0.0339, 0.05 0.0052/0.0036/0.0339. (Before the outline fix in
            // `raster`, 0.01 and 0.05 left the surface where it started.)
            learning_rate: 0.08,
            colour_learning_rate: 0.03,
            views_per_step: 4,
            max_side: 192,
            rgb_weight: 1.0,
            mask_weight: 1.0,
            // Halving both from here undid the surface (Chamfer 0.016), doubling both cost 0.001.
            laplacian_weight: 0.01,
            normal_weight: 0.005,
            // Bunny, teapot, bowl at rate 0.08: with 0.01 0.0052/0.0034/0.0342, with 0.03
            // 0.0051/0.0036/0.0339 (without it, bunny and teapot 0.0061/0.0039). At rate 0.15,
            // 0.1 pulled the teapot's bottom 0.014 above the scan's.
            unseen_weight: 0.03,
            guidance_steps: 200,
            guidance_weight: 1.0,
            seed: 0,
        }
    }
}

/// The fine stage's hook for a 2D prior: the gradient of its loss on rendered frames.
pub trait Guidance {
    /// `frames`: [frames, 3, h, w] in [0, 1], rendered from `cameras` ((polar, azimuth) in radians,
    /// SV3D's order: the input view last at azimuth 0). Returns d(loss)/d(frames), same shape.
    fn gradient(&self, frames: Tensor<4>, cameras: &[(f32, f32)]) -> Tensor<4>;
}

/// A 2D prior for the last steps and the views it judges: each camera with its (polar,
/// azimuth) in radians, in the order the prior wants them.
pub struct GuidedViews {
    pub guidance: Box<dyn Guidance>,
    pub views: Vec<(Camera, (f32, f32))>,
}

/// One frame as the losses use it: straight colour and alpha, 0..1.
struct Target {
    camera: Camera,
    rgb: Vec<f32>,
    alpha: Vec<f32>,
}

impl Target {
    /// The frame, shrunk (box filter, camera to match) so its longer side is at most `max_side`:
    /// the losses need the silhouette and colours, not every pixel of a 576² frame.
    fn new(camera: &Camera, image: &image::RgbaImage, max_side: u32) -> Self {
        let side = image.width().max(image.height());
        let (image, camera) = if side > max_side {
            let k = side.div_ceil(max_side);
            let (w, h) = ((image.width() / k).max(1), (image.height() / k).max(1));
            let (sx, sy) = (
                f64::from(w) / f64::from(image.width()),
                f64::from(h) / f64::from(image.height()),
            );
            let i = &camera.intrinsics;
            let intrinsics = orbitmesh_render::Intrinsics {
                width: w,
                height: h,
                fx: i.fx * sx,
                fy: i.fy * sy,
                cx: i.cx * sx,
                cy: i.cy * sy,
            };
            let small = image::imageops::resize(image, w, h, image::imageops::FilterType::Triangle);
            (
                std::borrow::Cow::Owned(small),
                Camera {
                    camera_to_world: camera.camera_to_world,
                    intrinsics,
                },
            )
        } else {
            (std::borrow::Cow::Borrowed(image), *camera)
        };
        let mut rgb = Vec::with_capacity(image.len() / 4 * 3);
        let mut alpha = Vec::with_capacity(image.len() / 4);
        for p in image.pixels() {
            rgb.extend([p[0], p[1], p[2]].map(|c| f32::from(c) / 255.0));
            alpha.push(f32::from(p[3]) / 255.0);
        }
        Target { camera, rgb, alpha }
    }

    /// Colour over `bg` ([H·W, 3]) and alpha ([H·W, 1]).
    fn composited(&self, bg: [f32; 3], device: &Device) -> (Tensor<2>, Tensor<2>) {
        let rgb: Vec<f32> = self
            .rgb
            .chunks(3)
            .zip(&self.alpha)
            .flat_map(|(c, &a)| [0, 1, 2].map(|k| c[k] * a + bg[k] * (1.0 - a)))
            .collect();
        (
            tensor2(rgb, 3, device),
            tensor2(self.alpha.clone(), 1, device),
        )
    }
}

/// Adam on a plain parameter vector (the parameters live on the host between steps: the
/// topology is recomputed from them every step anyway).
struct Adam {
    m: Vec<f32>,
    v: Vec<f32>,
    t: i32,
}

impl Adam {
    fn new(n: usize) -> Self {
        Adam {
            m: vec![0.0; n],
            v: vec![0.0; n],
            t: 0,
        }
    }

    fn step(&mut self, params: &mut [f32], grads: &[f32], lr: f64, frozen: &[bool]) {
        const B1: f32 = 0.9;
        const B2: f32 = 0.99;
        const EPS: f32 = 1e-8;
        self.t += 1;
        let c1 = 1.0 - B1.powi(self.t);
        let c2 = 1.0 - B2.powi(self.t);
        let lr = lr as f32;
        let width = params.len() / frozen.len();
        params
            .par_iter_mut()
            .zip(grads)
            .zip(self.m.par_iter_mut().zip(self.v.par_iter_mut()))
            .enumerate()
            .for_each(|(i, ((p, &g), (m, v)))| {
                if frozen[i / width] || !g.is_finite() {
                    return;
                }
                *m = B1 * *m + (1.0 - B1) * g;
                *v = B2 * *v + (1.0 - B2) * g * g;
                *p -= lr * (*m / c1) / ((*v / c2).sqrt() + EPS);
            });
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    pub step: usize,
    pub loss: f32,
    pub faces: usize,
    pub elapsed_s: f64,
}

/// The leaves the gradients are read from.
struct Params {
    sdf: Tensor<1>,
    deform: Tensor<2>,
    colour: Tensor<2>,
}

/// A refinement in progress.
pub struct Refiner {
    pub config: RefineConfig,
    grid: TetGrid,
    lattice: Tensor<2>,
    boundary: Vec<bool>,
    sdf: Vec<f32>,
    deform: Vec<f32>,
    colour: Vec<f32>,
    adam: [Adam; 3],
    /// Ambient and headlight terms of the shading model (see [`shade`]).
    shading: [f32; 2],
    shading_adam: Adam,
    targets: Vec<Target>,
    train: Vec<usize>,
    /// Points on the coarse surface, for the fit steps.
    coarse_points: Vec<[f32; 3]>,
    coarse_index: PointIndex,
    rasterizer: Rasterizer,
    guidance: Option<GuidedViews>,
    /// Directions from the origin to the training cameras, for the guidance's soft mask.
    reference_dirs: Vec<[f32; 3]>,
    /// The training cameras' centres, for the unseen surface's prior.
    camera_centres: Vec<[f32; 3]>,
    rng: ChaCha8Rng,
    device: Device,
    pub step: usize,
    pub elapsed_s: f64,
}

/// The logit of a colour channel, kept off 0 and 1 so it stays finite.
fn logit(c: f32) -> f32 {
    let c = c.clamp(0.02, 0.98);
    (c / (1.0 - c)).ln()
}

impl Refiner {
    /// Starts from `coarse` (object frame) and the frames `train` of `orbit` (which need alpha).
    /// `device` is the plain device; the refiner adds autodiff.
    pub fn new(
        config: RefineConfig,
        coarse: &TriMesh,
        orbit: &Orbit,
        train: Vec<usize>,
        rasterizer: Rasterizer,
        device: &Device,
    ) -> Result<Self, DmtetError> {
        if coarse.faces.is_empty() || coarse.area() <= 0.0 {
            return Err(DmtetError::Coarse("has no surface to refine".into()));
        }
        if train.is_empty() {
            return Err(DmtetError::Refine("no frames to refine against".into()));
        }
        if let Some(f) = train
            .iter()
            .map(|&i| &orbit.frames[i])
            .find(|f| !f.has_alpha)
        {
            return Err(DmtetError::Invalid {
                path: f.path.clone(),
                message: "the frame has no alpha channel: the mask loss needs silhouettes".into(),
            });
        }
        let grid = TetGrid::new(config.resolution, config.half);
        let points = grid.positions();
        let boundary: Vec<bool> = (0..points.len()).map(|v| grid.on_boundary(v)).collect();
        let sdf = initial_sdf(&grid, coarse, &boundary);
        let topology = grid.topology(&sdf);
        if topology.faces.is_empty() {
            return Err(DmtetError::Coarse(format!(
                "leaves no surface on a {}³ grid (is it smaller than a cell or outside \
                 [−{h}, {h}]³?)",
                config.resolution,
                h = config.half
            )));
        }
        // Colours: the frames' colours on the initial surface, carried to every lattice point
        // from the nearest surface vertex.
        let plain = device.clone();
        let initial = SurfacePoints::new(
            &topology,
            lattice(&grid, &plain),
            Tensor::from_data(TensorData::new(sdf.clone(), [sdf.len()]), &plain),
            Tensor::zeros([sdf.len(), 3], &plain),
            0.0,
            EDGE_MARGIN,
        );
        let surface = mesh_of(&topology, to_vec(initial.positions));
        let colours = colour_from_frames(&surface, orbit)?;
        let nearest = PointIndex::new(&surface.positions).nearest_all(&points);
        let colour: Vec<f32> = nearest
            .iter()
            .flat_map(|n| colours[n.index as usize].map(logit))
            .collect();
        let targets = orbit
            .frames
            .iter()
            .map(|f| Target::new(&f.camera, &f.image, config.max_side))
            .collect();
        let camera_centres: Vec<[f32; 3]> = train
            .iter()
            .map(|&i| {
                let p = orbit.frames[i].camera.position();
                [p.x as f32, p.y as f32, p.z as f32]
            })
            .collect();
        let reference_dirs = camera_centres
            .iter()
            .map(|&c| Vector3::from(c).normalize().into())
            .collect();
        let coarse_points = sample_surface(
            coarse,
            COARSE_FIT_SAMPLES,
            config.seed,
            Sampling::Stratified,
        )
        .points;
        let n = points.len();
        let autodiff = device.clone().autodiff();
        Ok(Refiner {
            lattice: lattice(&grid, &autodiff),
            grid,
            boundary,
            deform: vec![0.0; n * 3],
            adam: [Adam::new(n), Adam::new(n * 3), Adam::new(n * 3)],
            shading: [1.0, 0.0],
            shading_adam: Adam::new(2),
            sdf,
            colour,
            targets,
            train,
            coarse_index: PointIndex::new(&coarse_points),
            coarse_points,
            rasterizer,
            guidance: None,
            reference_dirs,
            camera_centres,
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            device: autodiff,
            step: 0,
            elapsed_s: 0.0,
            config,
        })
    }

    pub fn with_guidance(mut self, guidance: GuidedViews) -> Self {
        self.guidance = Some(guidance);
        self
    }

    /// Whether the step or time budget is spent.
    pub fn done(&self) -> bool {
        self.step >= self.config.steps
            || self
                .config
                .time_budget_s
                .is_some_and(|b| self.elapsed_s >= b)
    }

    fn topology(&self) -> Result<Topology, DmtetError> {
        let topology = self.grid.topology(&self.sdf);
        if topology.faces.is_empty() {
            let side = if self.sdf.iter().all(|&s| s >= 0.0) {
                "outside"
            } else {
                "inside"
            };
            return Err(DmtetError::Vanished {
                step: self.step,
                side,
            });
        }
        Ok(topology)
    }

    fn surface(&self, topology: &Topology, margin: f32) -> (SurfacePoints, Tensor<2>, Params) {
        let d = &self.device;
        let n = self.sdf.len();
        let sdf = Tensor::<1>::from_data(TensorData::new(self.sdf.clone(), [n]), d).require_grad();
        let deform = tensor2(self.deform.clone(), 3, d).require_grad();
        let colour = tensor2(self.colour.clone(), 3, d).require_grad();
        let points = SurfacePoints::new(
            topology,
            self.lattice.clone(),
            sdf.clone(),
            deform.clone(),
            self.grid.spacing(),
            margin,
        );
        let colours = sigmoid(points.interpolate(colour.clone()));
        (
            points,
            colours,
            Params {
                sdf,
                deform,
                colour,
            },
        )
    }

    /// One optimisation step.
    pub fn step(&mut self) -> Result<StepReport, DmtetError> {
        let started = Instant::now();
        let topology = self.topology()?;
        let (points, colours, params) = self.surface(&topology, 0.0);
        let positions = points.positions.clone();
        let position_values = to_vec(positions.clone().detach());
        let mesh = mesh_of(&topology, position_values);
        let scene = Scene::new(&mesh, &mut Vec::new())?;
        let edges = EdgeFaces::new(&topology.faces);
        let normals = face_normals(&positions, &topology.faces);
        let attributes = surface_attributes(&positions, &topology.faces, normals.clone(), colours);
        let shading =
            Tensor::<1>::from_data(TensorData::new(self.shading.to_vec(), [2]), &self.device)
                .require_grad();

        let fitting = self.step < self.config.fit_steps;
        if self.step == self.config.fit_steps && self.step > 0 {
            // The frames' gradients have another scale than the fit's.
            let n = self.sdf.len();
            self.adam[0] = Adam::new(n);
            self.adam[1] = Adam::new(n * 3);
        }
        let mut loss = if fitting {
            self.coarse_fit(&mesh.positions, &positions)
        } else {
            Tensor::<1>::zeros([1], &self.device)
        };
        let views = if fitting {
            0
        } else {
            self.config.views_per_step.min(self.train.len()).max(1)
        };
        for _ in 0..views {
            let target = &self.targets[self.train[self.rng.random_range(0..self.train.len())]];
            let bg: [f32; 3] = [self.rng.random(), self.rng.random(), self.rng.random()];
            let vis = self.rasterizer.rasterize(&scene, &target.camera)?;
            let image = render(
                &positions,
                attributes.clone(),
                &topology.faces,
                &edges,
                &vis,
                &target.camera,
            );
            let (colour, alpha) = shade(image, &shading, &target.camera);
            let bg_t = Tensor::<1>::from_data(TensorData::new(bg.to_vec(), [3]), &self.device)
                .reshape([1, 3]);
            let pred = colour + (alpha.clone().neg() + 1.0) * bg_t;
            let (t_rgb, t_alpha) = target.composited(bg, &self.device);
            let l = (pred - t_rgb).powf_scalar(2.0).mean() * self.config.rgb_weight
                + (alpha - t_alpha).powf_scalar(2.0).mean() * self.config.mask_weight;
            loss = loss + l / views as f32;
        }
        let cells = positions.clone() / self.grid.spacing();
        let around = neighbours(&topology.faces, mesh.positions.len());
        loss = loss
            + laplacian(&cells, &around) * self.config.laplacian_weight
            + normal_consistency(normals, &edges) * self.config.normal_weight;
        if !fitting {
            let spacing = self.grid.spacing();
            loss = loss
                + unseen_membrane(&positions, &mesh, &around, &self.camera_centres)
                    * (self.config.unseen_weight / (spacing * spacing));
        }
        if let Some(g) = &self.guidance
            && self.step + self.config.guidance_steps >= self.config.steps
        {
            let surrogate = guided(
                g,
                &positions,
                attributes.clone(),
                &shading,
                &mesh,
                &scene,
                &edges,
                &self.rasterizer,
                &self.reference_dirs,
            )?;
            loss = loss + surrogate * self.config.guidance_weight;
        }
        let value = to_vec(loss.clone().detach())[0];
        let grads = loss.backward();
        let Params {
            sdf,
            deform,
            colour,
        } = params;
        let g_sdf = sdf
            .grad(&grads)
            .map(to_vec)
            .unwrap_or_else(|| vec![0.0; self.sdf.len()]);
        let g_def = deform
            .grad(&grads)
            .map(to_vec)
            .unwrap_or_else(|| vec![0.0; self.deform.len()]);
        let g_col = colour
            .grad(&grads)
            .map(to_vec)
            .unwrap_or_else(|| vec![0.0; self.colour.len()]);
        let lr = self.config.learning_rate * self.schedule();
        self.adam[0].step(&mut self.sdf, &g_sdf, lr, &self.boundary);
        self.adam[1].step(&mut self.deform, &g_def, lr, &self.boundary);
        let clr = self.config.colour_learning_rate * self.schedule();
        self.adam[2].step(&mut self.colour, &g_col, clr, &self.boundary);
        if let Some(g) = shading.grad(&grads) {
            self.shading_adam
                .step(&mut self.shading, &to_vec(g), clr, &[false]);
        }
        self.step += 1;
        self.elapsed_s += started.elapsed().as_secs_f64();
        Ok(StepReport {
            step: self.step,
            loss: value,
            faces: topology.faces.len(),
            elapsed_s: self.elapsed_s,
        })
    }

    /// The learning rates' factor this step: constant while fitting the coarse mesh; against the
    /// frames, a linear warm-up over the first tenth of the steps (Adam's first steps move every
    /// parameter by about the full rate whatever its gradient, and 4 views give noisy gradients:
    /// on the teapot, before the outline fix in `raster`, 10 steps at the full rate undid the fit,
    /// Chamfer 0.0051 -> 0.0066), then a cosine decay to a tenth, so the surface settles instead
    /// of ending on a noisy step.
    fn schedule(&self) -> f64 {
        let Some(k) = self.step.checked_sub(self.config.fit_steps) else {
            return 1.0;
        };
        let n = self
            .config
            .steps
            .saturating_sub(self.config.fit_steps)
            .max(1);
        let warm = ((k + 1) as f64 / (n as f64 / 10.0).max(1.0)).min(1.0);
        let progress = (k as f64 / n as f64).min(1.0);
        warm * (0.1 + 0.45 * (1.0 + (std::f64::consts::PI * progress).cos()))
    }

    /// Mean squared distance, in cells², from the surface vertices to the coarse surface and
    /// from the coarse surface to the surface vertices (which pulls back parts the conversion
    /// lost).
    fn coarse_fit(&self, values: &[[f32; 3]], positions: &Tensor<2>) -> Tensor<1> {
        let d = &self.device;
        let to_coarse = self.coarse_index.nearest_all(values);
        let targets: Vec<f32> = to_coarse
            .iter()
            .flat_map(|n| self.coarse_points[n.index as usize])
            .collect();
        let from_coarse = PointIndex::new(values).nearest_all(&self.coarse_points);
        let reached = positions
            .clone()
            .select(0, index(from_coarse.iter().map(|n| n.index), d));
        let coarse = self.coarse_points.as_flattened().to_vec();
        let squared = |t: Tensor<2>| t.powf_scalar(2.0).sum_dim(1).mean();
        let spacing = self.grid.spacing();
        (squared(positions.clone() - tensor2(targets, 3, d))
            + squared(reached - tensor2(coarse, 3, d)))
            / (spacing * spacing)
    }

    /// The current surface in the object frame, with vertex colours lit head-on under the fitted
    /// shading, albedo × (ambient + headlight): the colour a view along the normal sees, which
    /// [`Refiner::headlight`] turns into any other view's.
    pub fn mesh(&self) -> Result<TriMesh, DmtetError> {
        let topology = self.topology()?;
        let (points, colours, _) = self.surface(&topology, EDGE_MARGIN);
        let mut mesh = mesh_of(&topology, to_vec(points.positions.detach()));
        let [ambient, headlight] = self.shading;
        mesh.colors = Some(
            to_vec(colours.detach())
                .chunks(3)
                .map(|c| [0, 1, 2].map(|k| (c[k] * (ambient + headlight)).clamp(0.0, 1.0)))
                .collect(),
        );
        Ok(mesh)
    }

    /// The fitted shading as a light from the camera on the head-on colours of
    /// [`Refiner::mesh`]: its ambient share, ambient / (ambient + headlight) (1 for evenly lit
    /// frames), as [`Scene::headlight`] and the texture bake take it. None if the fit left no
    /// light at all.
    pub fn headlight(&self) -> Option<f32> {
        let [ambient, headlight] = self.shading;
        (ambient + headlight > 1e-3).then(|| ambient / (ambient + headlight))
    }

    /// The current surface seen from `camera` through the fine stage's own renderer and
    /// shading: straight colour and alpha.
    pub fn render(&self, camera: &Camera) -> Result<image::RgbaImage, DmtetError> {
        let topology = self.topology()?;
        let (points, colours, _) = self.surface(&topology, EDGE_MARGIN);
        let positions = points.positions.detach();
        let mesh = mesh_of(&topology, to_vec(positions.clone()));
        let scene = Scene::new(&mesh, &mut Vec::new())?;
        let edges = EdgeFaces::new(&topology.faces);
        let normals = face_normals(&positions, &topology.faces);
        let attributes = surface_attributes(&positions, &topology.faces, normals, colours.detach());
        let shading =
            Tensor::<1>::from_data(TensorData::new(self.shading.to_vec(), [2]), &self.device);
        let vis = self.rasterizer.rasterize(&scene, camera)?;
        let image = render(
            &positions,
            attributes,
            &topology.faces,
            &edges,
            &vis,
            camera,
        );
        let (colour, alpha) = shade(image, &shading, camera);
        let (colour, alpha) = (to_vec(colour), to_vec(alpha));
        let byte = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
        Ok(image::RgbaImage::from_fn(vis.width, vis.height, |x, y| {
            let i = (y * vis.width + x) as usize;
            let a = alpha[i].clamp(0.0, 1.0);
            let c = |k: usize| if a > 0.0 { colour[3 * i + k] / a } else { 0.0 };
            image::Rgba([byte(c(0)), byte(c(1)), byte(c(2)), byte(a)])
        }))
    }

    /// The fitted shading: ambient and headlight terms.
    pub fn shading(&self) -> [f32; 2] {
        self.shading
    }
}

/// Per surface vertex: albedo (3), coverage (1) and unit normal (3).
fn surface_attributes(
    positions: &Tensor<2>,
    faces: &[[u32; 3]],
    face_normals: Tensor<2>,
    albedo: Tensor<2>,
) -> Tensor<2> {
    let e = positions.dims()[0];
    let normals = vertex_normals(positions, faces, face_normals);
    Tensor::cat(
        vec![albedo, Tensor::ones([e, 1], &positions.device()), normals],
        1,
    )
}

/// The shading model: albedo × (ambient + headlight · |n · view axis|), the two terms learned.
/// Frames with baked-in light from the camera (clay renders, flash photos) are explained by the
/// headlight term and give the normals a gradient; on evenly lit frames it goes to zero.
/// Returns premultiplied colour [H·W, 3] and coverage [H·W, 1] from a rendered [H·W, 7] image.
fn shade(image: Tensor<2>, shading: &Tensor<1>, camera: &Camera) -> (Tensor<2>, Tensor<2>) {
    let device = image.device();
    let axis = camera.camera_to_world.fixed_view::<3, 1>(0, 2);
    let axis = tensor2(axis.iter().map(|&v| v as f32).collect(), 1, &device);
    let facing = image.clone().narrow(1, 4, 3).matmul(axis).abs();
    let ambient = shading.clone().narrow(0, 0, 1).reshape([1, 1]);
    let headlight = shading.clone().narrow(0, 1, 1).reshape([1, 1]);
    let light = facing * headlight + ambient;
    (image.clone().narrow(1, 0, 3) * light, image.narrow(1, 3, 1))
}

/// Interpolated and antialiased [H·W, C] image of the surface in one view.
fn render(
    positions: &Tensor<2>,
    attributes: Tensor<2>,
    faces: &[[u32; 3]],
    edges: &EdgeFaces,
    vis: &VisibilityBuffer,
    camera: &Camera,
) -> Tensor<2> {
    let (screen, depth) = project(positions.clone(), camera);
    let screen_values: Vec<[f32; 2]> = to_vec(screen.clone().detach())
        .chunks(2)
        .map(|c| [c[0], c[1]])
        .collect();
    let image = interpolate(&screen, &depth, attributes, faces, vis);
    Silhouettes::find(faces, edges, &screen_values, vis).apply(image, &screen)
}

/// The guidance's surrogate loss: its gradient on the rendered images, masked by SV3D's soft mask
/// M = 1 − smoothstep(v·n; 0, 0.5) for the most visible reference camera (surfaces a training
/// frame sees head-on are left to the photometric loss), dotted with the images.
#[allow(clippy::too_many_arguments)]
fn guided(
    guided: &GuidedViews,
    positions: &Tensor<2>,
    attributes: Tensor<2>,
    shading: &Tensor<1>,
    mesh: &TriMesh,
    scene: &Scene,
    edges: &EdgeFaces,
    rasterizer: &Rasterizer,
    reference_dirs: &[[f32; 3]],
) -> Result<Tensor<1>, DmtetError> {
    let device = positions.device();
    let normals = mesh.face_normals();
    let mut images = Vec::new();
    let mut masks = Vec::new();
    let (mut h, mut w) = (0, 0);
    for (camera, _) in &guided.views {
        let vis = rasterizer.rasterize(scene, camera)?;
        (w, h) = (vis.width as usize, vis.height as usize);
        let image = render(
            positions,
            attributes.clone(),
            &mesh.faces,
            edges,
            &vis,
            camera,
        );
        let (colour, alpha) = shade(image, shading, camera);
        let on_white = colour + alpha.neg() + 1.0;
        images.push(on_white.transpose().reshape([1, 3, h, w]));
        masks.extend(
            vis.triangle
                .iter()
                .map(|&t| soft_mask(t, &normals, reference_dirs)),
        );
    }
    let n = images.len();
    let images = Tensor::cat(images, 0);
    let angles: Vec<(f32, f32)> = guided.views.iter().map(|v| v.1).collect();
    let gradient = guided.guidance.gradient(images.clone().detach(), &angles);
    let mask = Tensor::<4>::from_data(TensorData::new(masks, [n, 1, h, w]), &device);
    Ok((images * (gradient * mask).detach()).sum())
}

fn soft_mask(triangle: u32, normals: &[[f32; 3]], reference_dirs: &[[f32; 3]]) -> f32 {
    if triangle == NO_TRIANGLE {
        return 1.0;
    }
    let n = normals[triangle as usize];
    let best = reference_dirs
        .iter()
        .map(|d| d[0] * n[0] + d[1] * n[1] + d[2] * n[2])
        .fold(f32::NEG_INFINITY, f32::max);
    let x = (best / 0.5).clamp(0.0, 1.0);
    1.0 - x * x * (3.0 - 2.0 * x)
}

/// Mean squared uniform Laplacian (each vertex against the mean of its neighbours `around`).
fn laplacian(positions: &Tensor<2>, around: &[Vec<u32>]) -> Tensor<1> {
    let device = positions.device();
    let n = positions.dims()[0];
    let from = around
        .iter()
        .enumerate()
        .flat_map(|(v, ring)| std::iter::repeat_n(v as u32, ring.len()));
    let to = around.iter().flatten().copied();
    let sum = Tensor::<2>::zeros([n, 3], &device).select_assign(
        0,
        index(from, &device),
        positions.clone().select(0, index(to, &device)),
        IndexingUpdateOp::Add,
    );
    let degree = tensor2(
        around.iter().map(|r| r.len().max(1) as f32).collect(),
        1,
        &device,
    );
    (sum / degree - positions.clone())
        .powf_scalar(2.0)
        .sum_dim(1)
        .mean()
}

/// Each of the `n` vertices' neighbours across the faces' edges (each listed once per face it
/// shares).
fn neighbours(faces: &[[u32; 3]], n: usize) -> Vec<Vec<u32>> {
    let mut around = vec![Vec::new(); n];
    for f in faces {
        for k in 0..3 {
            let (a, b) = (f[k], f[(k + 1) % 3]);
            around[a as usize].push(b);
            around[b as usize].push(a);
        }
    }
    around
}

/// `values` after `sweeps` Gauss–Seidel sweeps that set each vertex for which `free` holds to
/// the mean of its neighbours.
fn relax(
    mut values: Vec<[f32; 3]>,
    around: &[Vec<u32>],
    free: &[bool],
    sweeps: usize,
) -> Vec<[f32; 3]> {
    let free: Vec<usize> = (0..around.len())
        .filter(|&v| free[v] && !around[v].is_empty())
        .collect();
    for _ in 0..sweeps {
        for &v in &free {
            let mut sum = [0.0f32; 3];
            for &u in &around[v] {
                for k in 0..3 {
                    sum[k] += values[u as usize][k];
                }
            }
            values[v] = sum.map(|s| s / around[v].len() as f32);
        }
    }
    values
}

/// Which surface vertices no training camera faces: their normal, smoothed over a few rings
/// (a marching-tets surface's own normals scatter by tens of degrees), faces away from every
/// camera in `centres` or meets it at less than [`UNSEEN_GRAZING`]; occlusion is not
/// considered. Orbits circle the object a little above it, so no camera sees its underside:
/// the silhouettes bound the bottom only at its rim, and the surface in between keeps the
/// visual hull's cone (on the bunny, the teapot and the bowl, 0.04–0.08 below the true bottom).
fn unseen_vertices(
    mesh: &TriMesh,
    normals: &[[f32; 3]],
    around: &[Vec<u32>],
    centres: &[[f32; 3]],
) -> Vec<bool> {
    let all = vec![true; mesh.positions.len()];
    let normals = relax(normals.to_vec(), around, &all, NORMAL_SMOOTHING);
    mesh.positions
        .iter()
        .zip(&normals)
        .map(|(&p, &n)| {
            let (p, n) = (Vector3::from(p), Vector3::from(n));
            centres.iter().all(|&o| {
                let towards = Vector3::from(o) - p;
                n.dot(&towards) <= UNSEEN_GRAZING * n.norm() * towards.norm()
            })
        })
        .collect()
}

/// The sine of the angle below which a camera sees a surface too obliquely to place it.
const UNSEEN_GRAZING: f32 = 0.05;

/// Smoothing sweeps of the normals that decide what is unseen.
const NORMAL_SMOOTHING: usize = 8;

/// Gauss–Seidel sweeps of the membrane fill: enough to cross the ~20 vertices from the rim of a
/// res-64 surface's underside to its middle.
const MEMBRANE_SWEEPS: usize = 400;

/// Mean over the surface vertices of the squared distance, along the vertex normal, from each
/// unseen vertex to its membrane target. Along the normal only: the targets' sliding within
/// the surface is the uniform Laplacian's, not a shape.
fn unseen_membrane(
    positions: &Tensor<2>,
    mesh: &TriMesh,
    around: &[Vec<u32>],
    centres: &[[f32; 3]],
) -> Tensor<1> {
    let device = positions.device();
    let normals = mesh.vertex_normals();
    let unseen = unseen_vertices(mesh, &normals, around, centres);
    // Where the unseen vertices would lie on a membrane (the uniform Laplacian's harmonic
    // surface) spanning the seen vertices around them: flat across a flat rim, the least-area
    // guess for what only priors can decide.
    let target = relax(mesh.positions.clone(), around, &unseen, MEMBRANE_SWEEPS);
    let n = mesh.positions.len();
    let mut offset = Vec::with_capacity(n);
    let mut direction = Vec::with_capacity(n * 3);
    for v in 0..n {
        let normal = if unseen[v] { normals[v] } else { [0.0; 3] };
        offset.push((0..3).map(|k| normal[k] * target[v][k]).sum::<f32>());
        direction.extend(normal);
    }
    let along = (positions.clone() * tensor2(direction, 3, &device)).sum_dim(1);
    (along - tensor2(offset, 1, &device))
        .powf_scalar(2.0)
        .mean()
}

/// Face normals ([F, 3]), as long as twice the face's area.
fn face_normals(positions: &Tensor<2>, faces: &[[u32; 3]]) -> Tensor<2> {
    let device = positions.device();
    let corner = |k: usize| {
        positions
            .clone()
            .select(0, index(faces.iter().map(|f| f[k]), &device))
    };
    let (a, b, c) = (corner(0), corner(1), corner(2));
    let (u, v) = (b - a.clone(), c - a);
    let col = |t: &Tensor<2>, k: usize| t.clone().narrow(1, k, 1);
    Tensor::cat(
        vec![
            col(&u, 1) * col(&v, 2) - col(&u, 2) * col(&v, 1),
            col(&u, 2) * col(&v, 0) - col(&u, 0) * col(&v, 2),
            col(&u, 0) * col(&v, 1) - col(&u, 1) * col(&v, 0),
        ],
        1,
    )
}

fn normalised(v: Tensor<2>) -> Tensor<2> {
    let length = (v.clone().powf_scalar(2.0).sum_dim(1) + 1e-20).sqrt();
    v / length
}

/// Unit vertex normals ([E, 3]): the area-weighted mean of the faces around each vertex.
fn vertex_normals(positions: &Tensor<2>, faces: &[[u32; 3]], face_normals: Tensor<2>) -> Tensor<2> {
    let device = positions.device();
    let mut sum = Tensor::<2>::zeros(positions.dims(), &device);
    for k in 0..3 {
        sum = sum.select_assign(
            0,
            index(faces.iter().map(|f| f[k]), &device),
            face_normals.clone(),
            IndexingUpdateOp::Add,
        );
    }
    normalised(sum)
}

/// Mean (1 − cos) between the normals of faces sharing an edge.
fn normal_consistency(face_normals: Tensor<2>, edges: &EdgeFaces) -> Tensor<1> {
    let device = face_normals.device();
    let unit = normalised(face_normals);
    // Sorted: the map's order changes from run to run, and so would the sum's rounding.
    let mut pairs: Vec<(u32, u32)> = edges.pairs().collect();
    pairs.sort_unstable();
    let (f, g): (Vec<u32>, Vec<u32>) = pairs.into_iter().unzip();
    if f.is_empty() {
        return Tensor::zeros([1], &device);
    }
    let dot =
        (unit.clone().select(0, index(f, &device)) * unit.select(0, index(g, &device))).sum_dim(1);
    (dot.neg() + 1.0).mean()
}

fn mesh_of(topology: &Topology, positions: Vec<f32>) -> TriMesh {
    TriMesh::new(
        positions.chunks(3).map(|c| [c[0], c[1], c[2]]).collect(),
        topology.faces.clone(),
    )
}

/// Signed distance to the coarse surface in lattice cells, truncated, negative inside (by the
/// generalised winding number, so a coarse mesh with small holes still has an inside).
fn initial_sdf(grid: &TetGrid, coarse: &TriMesh, boundary: &[bool]) -> Vec<f32> {
    let points = grid.positions();
    let samples = sample_surface(coarse, 200_000, 0, Sampling::Stratified);
    let nearest = PointIndex::new(&samples.points).nearest_all(&points);
    let winding = WindingNumber::new(coarse);
    let spacing = grid.spacing();
    points
        .par_iter()
        .zip(&nearest)
        .zip(boundary)
        .map(|((p, n), &edge)| {
            let d = (n.distance / spacing).min(INIT_TRUNCATION);
            if edge {
                return INIT_TRUNCATION;
            }
            let inside = winding.encloses(p.map(f64::from));
            // Never exactly zero: a zero value would sit on no side.
            let d = d.max(1e-3);
            if inside { -d } else { d }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use orbitmesh_geom::chamfer_distance;
    use orbitmesh_geom::shapes::{cuboid, uv_sphere};
    use orbitmesh_geom::{read_mesh, write_mesh};
    use orbitmesh_render::camera::{Intrinsics, OrbitView, SV3D_FOV_DEG};
    use orbitmesh_render::rendered_orbit;

    fn small(resolution: usize, steps: usize) -> RefineConfig {
        RefineConfig {
            resolution,
            steps,
            fit_steps: 0,
            views_per_step: 3,
            ..RefineConfig::default()
        }
    }

    fn mean_radius(mesh: &TriMesh) -> f32 {
        let r: f32 = mesh
            .positions
            .iter()
            .map(|p| (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt())
            .sum();
        r / mesh.positions.len() as f32
    }

    #[test]
    fn a_sphere_too_small_grows_to_its_frames_and_comes_out_closed_and_readable() {
        let orbit = rendered_orbit(&uv_sphere(0.3, 24, 48), 8, 64);
        let coarse = uv_sphere(0.24, 24, 48);
        let train: Vec<usize> = (0..8).collect();
        let mut refiner = Refiner::new(
            small(24, 80),
            &coarse,
            &orbit,
            train,
            Rasterizer::Cpu,
            &Device::flex(),
        )
        .unwrap();
        let before = mean_radius(&refiner.mesh().unwrap());
        while !refiner.done() {
            refiner.step().unwrap();
        }
        let mesh = refiner.mesh().unwrap();
        let after = mean_radius(&mesh);
        assert!(before < 0.255, "starts at the coarse radius: {before}");
        assert!(
            (after - 0.3).abs() < 0.015,
            "radius {before} -> {after}, frames show 0.3"
        );

        crate::tetgrid::tests::assert_closed_oriented(&mesh.faces);
        for f in &mesh.faces {
            assert!(f[0] != f[1] && f[1] != f[2] && f[0] != f[2]);
            let t = [0, 1, 2].map(|k| mesh.positions[f[k] as usize].map(f64::from));
            assert!(
                orbitmesh_geom::triangle_area(&t) > 1e-10,
                "degenerate face {f:?}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fine.obj");
        write_mesh(&path, &mesh).unwrap();
        let back = read_mesh(&path).unwrap().mesh;
        assert_eq!(back.faces.len(), mesh.faces.len());
        assert_eq!(back.positions.len(), mesh.positions.len());
        assert!(back.colors.is_some(), "vertex colours survive the OBJ");
    }

    #[test]
    fn the_fit_steps_recover_a_plate_thinner_than_a_cell() {
        // 0.06 thick on a grid of 0.075 cells, tilted: the lattice catches it only in patches.
        let mut plate = cuboid([-0.35, -0.35, -0.03], [0.35, 0.35, 0.03]);
        let (s, c) = 0.35f32.sin_cos();
        for p in &mut plate.positions {
            *p = [p[0], c * p[1] - s * p[2], s * p[1] + c * p[2]];
        }
        let orbit = rendered_orbit(&plate, 4, 32);
        let config = RefineConfig {
            fit_steps: 60,
            ..small(16, 60)
        };
        let mut refiner = Refiner::new(
            config,
            &plate,
            &orbit,
            vec![0],
            Rasterizer::Cpu,
            &Device::flex(),
        )
        .unwrap();
        let truth = sample_surface(&plate, 20_000, 1, Sampling::Stratified).points;
        let chamfer = |r: &Refiner| {
            let mesh = r.mesh().unwrap();
            chamfer_distance(
                &sample_surface(&mesh, 20_000, 1, Sampling::Stratified).points,
                &truth,
            )
        };
        let before = chamfer(&refiner);
        while !refiner.done() {
            refiner.step().unwrap();
        }
        let after = chamfer(&refiner);
        assert!(
            after < 0.5 * before && after < 0.01,
            "Chamfer to the plate: {before} converted -> {after} fitted"
        );
    }

    #[test]
    fn the_unseen_underside_flattens_between_the_rims_the_silhouettes_hold() {
        // A slab seen from 10° above, and its visual hull's kind of error for a start: the
        // bottom hangs down as a shallow pyramid that no camera sees and no silhouette rejects.
        let truth = cuboid([-0.4, -0.4, -0.2], [0.4, 0.4, 0.2]);
        let mut coarse = truth.clone();
        coarse.positions.push([0.0, 0.0, -0.26]);
        let apex = coarse.positions.len() as u32 - 1;
        coarse.faces.retain(|f| f.iter().any(|&v| v >> 2 & 1 == 1));
        coarse
            .faces
            .extend([[0, 2, apex], [2, 3, apex], [3, 1, apex], [1, 0, apex]]);
        let orbit = rendered_orbit(&truth, 8, 64);
        let lowest = |weight: f32| {
            let config = RefineConfig {
                unseen_weight: weight,
                ..small(32, 80)
            };
            let mut refiner = Refiner::new(
                config,
                &coarse,
                &orbit,
                (0..8).collect(),
                Rasterizer::Cpu,
                &Device::flex(),
            )
            .unwrap();
            while !refiner.done() {
                refiner.step().unwrap();
            }
            // The middle of the underside, where the pyramid hangs lowest.
            let mesh = refiner.mesh().unwrap();
            let middle: Vec<f32> = mesh
                .positions
                .iter()
                .filter(|p| p[0].abs() < 0.2 && p[1].abs() < 0.2 && p[2] < 0.0)
                .map(|p| p[2])
                .collect();
            middle.iter().sum::<f32>() / middle.len() as f32
        };
        let (without, with) = (lowest(0.0), lowest(RefineConfig::default().unseen_weight));
        assert!(
            without < -0.235,
            "without the prior the pyramid stays: {without}"
        );
        assert!(
            with > -0.22,
            "with it the bottom flattens towards -0.2: {with}"
        );
    }

    #[test]
    fn an_empty_or_tiny_coarse_mesh_is_refused() {
        let orbit = rendered_orbit(&uv_sphere(0.3, 12, 24), 4, 32);
        let empty = TriMesh::new(Vec::new(), Vec::new());
        // Between lattice points: no lattice point falls inside it.
        let mut tiny = uv_sphere(0.001, 6, 12);
        tiny.positions
            .iter_mut()
            .for_each(|p| p.iter_mut().for_each(|c| *c += 0.03));
        for coarse in [empty, tiny] {
            let err = Refiner::new(
                small(16, 1),
                &coarse,
                &orbit,
                vec![0, 1],
                Rasterizer::Cpu,
                &Device::flex(),
            )
            .err()
            .expect("refused");
            assert!(matches!(err, DmtetError::Coarse(_)), "{err}");
        }
    }

    #[test]
    fn a_surface_that_vanishes_is_reported() {
        // Frames with nothing in them pull the sphere in until nothing is left.
        let mut orbit = rendered_orbit(&uv_sphere(0.3, 12, 24), 6, 32);
        for f in &mut orbit.frames {
            f.image.pixels_mut().for_each(|p| p.0 = [0; 4]);
        }
        let config = small(12, 300);
        let mut refiner = Refiner::new(
            config,
            &uv_sphere(0.12, 12, 24),
            &orbit,
            (0..6).collect(),
            Rasterizer::Cpu,
            &Device::flex(),
        )
        .unwrap();
        let err = loop {
            match refiner.step() {
                Ok(_) if refiner.done() => panic!("the surface survived 300 steps"),
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        assert!(matches!(err, DmtetError::Vanished { .. }), "{err}");
        assert!(refiner.mesh().is_err(), "nothing to write");
    }

    /// Pulls every rendered pixel towards one colour: d/dx ½‖x − c‖².
    struct PullTowards([f32; 3]);

    impl Guidance for PullTowards {
        fn gradient(&self, frames: Tensor<4>, cameras: &[(f32, f32)]) -> Tensor<4> {
            assert_eq!(frames.dims()[0], cameras.len());
            let c = Tensor::<1>::from_data(TensorData::new(self.0.to_vec(), [3]), &frames.device());
            frames - c.reshape([1, 3, 1, 1])
        }
    }

    fn redness(image: &image::RgbaImage) -> f32 {
        let covered: Vec<_> = image.pixels().filter(|p| p[3] == 255).collect();
        covered
            .iter()
            .map(|p| f32::from(p[0]) - 0.5 * (f32::from(p[1]) + f32::from(p[2])))
            .sum::<f32>()
            / covered.len() as f32
    }

    #[test]
    fn guidance_recolours_what_the_reference_views_do_not_see() {
        // Trained against one frame from azimuth 0 only, guided from azimuth 180: the back of
        // the sphere (soft mask 1) turns red, the front (mask 0, seen head-on) stays grey.
        let orbit = rendered_orbit(&uv_sphere(0.3, 16, 32), 2, 48);
        let k = Intrinsics::from_fov(SV3D_FOV_DEG, 48, 48);
        let view = |azimuth_deg: f64| {
            OrbitView {
                elevation_deg: 0.0,
                azimuth_deg,
                radius: 2.0,
            }
            .camera(k)
        };
        let config = RefineConfig {
            rgb_weight: 0.0,
            mask_weight: 0.0,
            learning_rate: 0.0,
            colour_learning_rate: 0.1,
            guidance_steps: 30,
            ..small(16, 30)
        };
        let mut refiner = Refiner::new(
            config,
            &uv_sphere(0.3, 16, 32),
            &orbit,
            vec![0],
            Rasterizer::Cpu,
            &Device::flex(),
        )
        .unwrap()
        .with_guidance(GuidedViews {
            guidance: Box::new(PullTowards([1.0, 0.0, 0.0])),
            views: vec![(
                view(180.0),
                (std::f32::consts::FRAC_PI_2, std::f32::consts::PI),
            )],
        });
        let back = redness(&refiner.render(&view(180.0)).unwrap());
        let front = redness(&refiner.render(&view(0.0)).unwrap());
        while !refiner.done() {
            refiner.step().unwrap();
        }
        let back_after = redness(&refiner.render(&view(180.0)).unwrap());
        let front_after = redness(&refiner.render(&view(0.0)).unwrap());
        assert!(back_after - back > 60.0, "back: {back} -> {back_after}");
        assert!(
            (front_after - front).abs() < 0.2 * (back_after - back),
            "front: {front} -> {front_after}"
        );
    }
}
