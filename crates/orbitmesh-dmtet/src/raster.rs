//! Differentiable rendering in nvdiffrast's split. The rasterizer (orbitmesh-render, not
//! differentiated) says which triangle covers each pixel; [`interpolate`] recomputes that pixel's
//! perspective-correct barycentrics from the projected vertices in burn ops, so attributes get
//! gradients with respect to both their values and the vertex positions; [`Silhouettes`] finds the
//! pixel pairs a silhouette edge separates and blends them by where the edge crosses, which is
//! what gives silhouette vertices their gradient from a mask loss.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, DefaultHasher};

use burn::tensor::{Device, IndexingUpdateOp, Int, Tensor, TensorData};
use orbitmesh_render::Camera;
use orbitmesh_render::raster::{NO_TRIANGLE, VisibilityBuffer, clip_from_world};

use crate::surface::{index, tensor2};

/// Vertices in pixel coordinates (x right, y down, pixel centres at +0.5): [N, 2] screen
/// positions and [N, 1] view depths, through the rasterizer's own projection.
pub fn project(positions: Tensor<2>, camera: &Camera) -> (Tensor<2>, Tensor<2>) {
    let device = positions.device();
    let m = clip_from_world(camera);
    let (w, h) = (
        camera.intrinsics.width as f32,
        camera.intrinsics.height as f32,
    );
    // Rows x, y, w of the matrix, folded with the viewport: screen = (row · [p, 1]) / w.
    let rows = [
        [0.5 * w, 0.0, 0.5 * w],
        [0.0, -0.5 * h, 0.5 * h],
        [0.0, 0.0, 1.0],
    ];
    let mut a = vec![0.0f32; 3 * 3];
    let mut bias = vec![0.0f32; 3];
    for (out, r) in rows.iter().enumerate() {
        for col in 0..4 {
            // Combination of the clip rows x (0), y (1) and w (3).
            let v: f64 = [0usize, 1, 3]
                .iter()
                .zip(r)
                .map(|(&row, &k)| f64::from(k) * m[(row, col)])
                .sum();
            if col < 3 {
                a[col * 3 + out] = v as f32;
            } else {
                bias[out] = v as f32;
            }
        }
    }
    let n = positions.dims()[0];
    let a = tensor2(a, 3, &device);
    let bias = tensor2(bias, 3, &device);
    let clip = positions.matmul(a) + bias;
    let depth = clip.clone().narrow(1, 2, 1);
    let screen = clip.narrow(1, 0, 2) / depth.clone();
    debug_assert_eq!(screen.dims(), [n, 2]);
    (screen, depth)
}

fn cross2(a: Tensor<2>, b: Tensor<2>) -> Tensor<2> {
    a.clone().narrow(1, 0, 1) * b.clone().narrow(1, 1, 1) - a.narrow(1, 1, 1) * b.narrow(1, 0, 1)
}

/// The covered pixels of a visibility buffer and their triangles' corners.
struct Covered {
    pixels: Tensor<1, Int>,
    corners: [Tensor<1, Int>; 3],
    centres: Tensor<2>,
}

impl Covered {
    fn new(faces: &[[u32; 3]], vis: &VisibilityBuffer, device: &Device) -> Option<Self> {
        let w = vis.width as usize;
        let mut pixels = Vec::new();
        let mut corners = [Vec::new(), Vec::new(), Vec::new()];
        let mut centres = Vec::new();
        for (p, &t) in vis.triangle.iter().enumerate() {
            if t == NO_TRIANGLE {
                continue;
            }
            pixels.push(p as u32);
            for (k, c) in corners.iter_mut().enumerate() {
                c.push(faces[t as usize][k]);
            }
            centres.extend([(p % w) as f32 + 0.5, (p / w) as f32 + 0.5]);
        }
        if pixels.is_empty() {
            return None;
        }
        Some(Covered {
            pixels: index(pixels, device),
            corners: corners.map(|c| index(c, device)),
            centres: tensor2(centres, 2, device),
        })
    }

    /// Perspective-correct barycentrics of each covered pixel's centre: [P, 1] × 3.
    fn barycentrics(&self, screen: &Tensor<2>, depth: &Tensor<2>) -> [Tensor<2>; 3] {
        let s = self.corners.clone().map(|c| screen.clone().select(0, c));
        let w = self.corners.clone().map(|c| depth.clone().select(0, c));
        let d1 = s[1].clone() - s[0].clone();
        let d2 = s[2].clone() - s[0].clone();
        let dq = self.centres.clone() - s[0].clone();
        let area = cross2(d1.clone(), d2.clone());
        let l1 = cross2(dq.clone(), d2) / area.clone();
        let l2 = cross2(d1, dq) / area;
        let l0 = l1.clone().neg() - l2.clone() + 1.0;
        let r = [l0 / w[0].clone(), l1 / w[1].clone(), l2 / w[2].clone()];
        let sum = r[0].clone() + r[1].clone() + r[2].clone();
        r.map(|r| r / sum.clone())
    }
}

/// Per-pixel attributes ([H·W, C], zero where nothing is drawn) from per-vertex attributes
/// ([N, C]) over the triangles the rasterizer put in `vis`.
pub fn interpolate(
    screen: &Tensor<2>,
    depth: &Tensor<2>,
    attributes: Tensor<2>,
    faces: &[[u32; 3]],
    vis: &VisibilityBuffer,
) -> Tensor<2> {
    let device = attributes.device();
    let c = attributes.dims()[1];
    let image = Tensor::zeros([vis.triangle.len(), c], &device);
    let Some(cov) = Covered::new(faces, vis, &device) else {
        return image;
    };
    let b = cov.barycentrics(screen, depth);
    let values = cov
        .corners
        .into_iter()
        .zip(b)
        .map(|(corner, b)| attributes.clone().select(0, corner) * b)
        .reduce(|a, b| a + b)
        .expect("three corners");
    image.select_assign(0, cov.pixels, values, IndexingUpdateOp::Add)
}

/// A hash map whose iteration order is the same in every process: std's default hasher is seeded
/// at random per process, and the losses summed over these maps' entries would then differ in
/// their last bits from run to run (and a resumed run's mesh from an uninterrupted one's).
type FixedOrderMap<K, V> = HashMap<K, V, BuildHasherDefault<DefaultHasher>>;

/// For each undirected mesh edge, the faces on its two sides (closed meshes have two).
pub struct EdgeFaces(FixedOrderMap<(u32, u32), [u32; 2]>);

impl EdgeFaces {
    pub fn new(faces: &[[u32; 3]]) -> Self {
        let mut map: FixedOrderMap<(u32, u32), [u32; 2]> =
            FixedOrderMap::with_capacity_and_hasher(faces.len() * 3 / 2, Default::default());
        for (f, face) in faces.iter().enumerate() {
            for k in 0..3 {
                let (a, b) = (face[k], face[(k + 1) % 3]);
                map.entry((a.min(b), a.max(b)))
                    .and_modify(|e| e[1] = f as u32)
                    .or_insert([f as u32, NO_TRIANGLE]);
            }
        }
        EdgeFaces(map)
    }

    /// The face pairs across every edge with two faces.
    pub fn pairs(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.0
            .values()
            .filter(|[_, g]| *g != NO_TRIANGLE)
            .map(|&[f, g]| (f, g))
    }

    /// Every edge with its two faces (the second `NO_TRIANGLE` on an open boundary).
    fn all(&self) -> impl Iterator<Item = ((u32, u32), [u32; 2])> + '_ {
        self.0.iter().map(|(&e, &f)| (e, f))
    }

    fn across(&self, a: u32, b: u32, face: u32) -> u32 {
        self.0
            .get(&(a.min(b), a.max(b)))
            .map_or(NO_TRIANGLE, |&[f, g]| if f == face { g } else { f })
    }
}

/// Whether the edge between faces `f` and `g` (`NO_TRIANGLE` on an open boundary) is part of the
/// outline: a boundary, or between a face turned towards the camera and one turned away.
fn is_outline(f: u32, g: u32, facing: &[bool]) -> bool {
    g == NO_TRIANGLE || facing[f as usize] != facing[g as usize]
}

/// Where the mesh's outline edges (an open boundary, or between a face turned towards the camera
/// and one turned away) cross the segments between neighbouring pixel centres: per segment, the
/// crossings nearest each end.
struct Outline {
    /// Keyed by the segment's first pixel (left or upper) and whether it runs along a row.
    crossings: FixedOrderMap<(usize, bool), [Crossing; 2]>,
}

/// An outline edge and where along the segment it crosses.
#[derive(Clone, Copy)]
struct Crossing {
    at: f32,
    edge: (u32, u32),
}

impl Outline {
    fn new(edges: &EdgeFaces, facing: &[bool], screen: &[[f32; 2]], w: usize, h: usize) -> Self {
        let mut crossings: FixedOrderMap<(usize, bool), [Crossing; 2]> = FixedOrderMap::default();
        for ((u, v), [f, g]) in edges.all() {
            if !is_outline(f, g, facing) {
                continue;
            }
            let (a, b) = (screen[u as usize], screen[v as usize]);
            for horizontal in [true, false] {
                let (along, across) = if horizontal { (0, 1) } else { (1, 0) };
                let (lo, hi) = (a[across].min(b[across]), a[across].max(b[across]));
                if !(lo.is_finite() && hi.is_finite()) || lo == hi {
                    continue;
                }
                // Rows (or columns) whose centre line the edge spans.
                let n = if horizontal { h } else { w } as f32;
                let (first, last) = ((lo - 0.5).ceil().max(0.0), (hi - 0.5).floor().min(n - 1.0));
                if first > last {
                    continue;
                }
                for line in first as i64..=last as i64 {
                    let l = line as f32 + 0.5;
                    let at = a[along]
                        + (l - a[across]) * (b[along] - a[along]) / (b[across] - a[across]);
                    // The segment whose closed span holds the crossing (both, on a centre).
                    let first = (at - 0.5).floor() as i64;
                    let on_centre = (at - 0.5) == first as f32;
                    for first in if on_centre { first - 1 } else { first }..=first {
                        let (i, j) = if horizontal {
                            (first, line)
                        } else {
                            (line, first)
                        };
                        let (di, dj) = if horizontal { (1, 0) } else { (0, 1) };
                        if i < 0 || j < 0 || i + di >= w as i64 || j + dj >= h as i64 {
                            continue;
                        }
                        let key = (j as usize * w + i as usize, horizontal);
                        let c = Crossing { at, edge: (u, v) };
                        crossings
                            .entry(key)
                            .and_modify(|[lo, hi]| {
                                if at < lo.at {
                                    *lo = c;
                                }
                                if at > hi.at {
                                    *hi = c;
                                }
                            })
                            .or_insert([c, c]);
                    }
                }
            }
        }
        Outline { crossings }
    }

    /// The outline edge crossing the segment from pixel `first` nearest its second pixel, or
    /// with `towards_first` nearest `first`.
    fn last_crossing(
        &self,
        first: usize,
        horizontal: bool,
        towards_first: bool,
    ) -> Option<(u32, u32)> {
        let [lo, hi] = self.crossings.get(&(first, horizontal))?;
        Some(if towards_first { lo.edge } else { hi.edge })
    }
}

/// The pixel pairs a silhouette edge separates in one view, found on plain numbers; applying
/// them ([`Silhouettes::apply`]) is differentiable.
pub struct Silhouettes {
    /// Pixel whose value is blended, and the pixel blended in.
    target: Vec<u32>,
    source: Vec<u32>,
    /// The silhouette edge's endpoints.
    ends: [Vec<u32>; 2],
    /// 1 when the pair is horizontal (the edge crosses a row), 0 when vertical.
    horizontal: Vec<f32>,
    /// The row (horizontal pairs) or column centre the crossing is measured on.
    line: Vec<f32>,
    /// The covered pixel's centre along the pair and the direction towards the other pixel.
    start: Vec<f32>,
    direction: Vec<f32>,
    /// +1: the edge reaches past the midpoint, the uncovered pixel takes (d − ½) of the covered
    /// one; −1: it stops short, the covered pixel takes (½ − d) of the uncovered one.
    sign: Vec<f32>,
}

impl Silhouettes {
    /// `screen`: the vertices' pixel coordinates as the rasterizer saw them.
    pub fn find(
        faces: &[[u32; 3]],
        edges: &EdgeFaces,
        screen: &[[f32; 2]],
        vis: &VisibilityBuffer,
    ) -> Self {
        let (w, h) = (vis.width as usize, vis.height as usize);
        let facing: Vec<bool> = faces
            .iter()
            .map(|f| {
                let [a, b, c] = f.map(|v| screen[v as usize]);
                (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]) >= 0.0
            })
            .collect();
        let outline = Outline::new(edges, &facing, screen, w, h);
        let mut s = Silhouettes {
            target: Vec::new(),
            source: Vec::new(),
            ends: [Vec::new(), Vec::new()],
            horizontal: Vec::new(),
            line: Vec::new(),
            start: Vec::new(),
            direction: Vec::new(),
            sign: Vec::new(),
        };
        let mut pair = |p: usize, q: usize, horizontal: bool| {
            let (tp, tq) = (vis.triangle[p], vis.triangle[q]);
            if tp == tq {
                return;
            }
            // The nearer surface is the one whose edge makes the discontinuity.
            let (front, other) =
                if tq == NO_TRIANGLE || (tp != NO_TRIANGLE && vis.depth[p] <= vis.depth[q]) {
                    (p, q)
                } else {
                    (q, p)
                };
            let centre = |i: usize| [(i % w) as f32 + 0.5, (i / w) as f32 + 0.5];
            let (cf, co) = (centre(front), centre(other));
            let (along, across) = if horizontal { (0, 1) } else { (1, 0) };
            let direction = co[along] - cf[along];
            let line = cf[across];
            let edge = if vis.triangle[other] == NO_TRIANGLE {
                // Where the mesh's outline leaves the segment: triangles smaller than a pixel
                // rarely put the outline's own triangle on the covered centre.
                outline.last_crossing(p.min(q), horizontal, direction < 0.0)
            } else {
                // A fold in front of more surface: an outline edge of the front triangle.
                let t = vis.triangle[front];
                let face = faces[t as usize];
                (0..3)
                    .map(|k| (face[k], face[(k + 1) % 3]))
                    .find(|&(u, v)| {
                        if !is_outline(t, edges.across(u, v, t), &facing) {
                            return false;
                        }
                        let (a, b) = (screen[u as usize], screen[v as usize]);
                        (a[across] - line) * (b[across] - line) <= 0.0 && a[across] != b[across]
                    })
            };
            let Some((u, v)) = edge else {
                return;
            };
            let (a, b) = (screen[u as usize], screen[v as usize]);
            let c = a[along] + (line - a[across]) * (b[along] - a[along]) / (b[across] - a[across]);
            let d = (c - cf[along]) * direction;
            if !(0.0..=1.0).contains(&d) {
                return;
            }
            let beyond = d >= 0.5;
            s.target.push(if beyond { other } else { front } as u32);
            s.source.push(if beyond { front } else { other } as u32);
            s.ends[0].push(u);
            s.ends[1].push(v);
            s.horizontal.push(if horizontal { 1.0 } else { 0.0 });
            s.line.push(line);
            s.start.push(cf[along]);
            s.direction.push(direction);
            s.sign.push(if beyond { 1.0 } else { -1.0 });
        };
        for y in 0..h {
            for x in 0..w {
                let p = y * w + x;
                if x + 1 < w {
                    pair(p, p + 1, true);
                }
                if y + 1 < h {
                    pair(p, p + w, false);
                }
            }
        }
        s
    }

    pub fn len(&self) -> usize {
        self.target.len()
    }

    pub fn is_empty(&self) -> bool {
        self.target.is_empty()
    }

    /// The antialiased image ([H·W, C]) from a rendered one and the vertices' screen positions.
    pub fn apply(&self, image: Tensor<2>, screen: &Tensor<2>) -> Tensor<2> {
        if self.is_empty() {
            return image;
        }
        let device = image.device();
        let k = self.len();
        let col = |v: &[f32]| Tensor::<2>::from_data(TensorData::new(v.to_vec(), [k, 1]), &device);
        let hz = col(&self.horizontal);
        let vt = hz.clone().neg() + 1.0;
        let [a, b] = self
            .ends
            .clone()
            .map(|e| screen.clone().select(0, index(e, &device)));
        let split = |p: Tensor<2>| {
            let (x, y) = (p.clone().narrow(1, 0, 1), p.narrow(1, 1, 1));
            (
                x.clone() * hz.clone() + y.clone() * vt.clone(),
                y * hz.clone() + x * vt.clone(),
            )
        };
        let (a_along, a_across) = split(a);
        let (b_along, b_across) = split(b);
        let crossing = a_along.clone()
            + (col(&self.line) - a_across.clone()) * (b_along - a_along) / (b_across - a_across);
        let d = (crossing - col(&self.start)) * col(&self.direction);
        let weight = (d - 0.5) * col(&self.sign);
        let target = index(self.target.iter().copied(), &device);
        let source = index(self.source.iter().copied(), &device);
        let delta =
            (image.clone().select(0, source) - image.clone().select(0, target.clone())) * weight;
        image.select_assign(0, target, delta, IndexingUpdateOp::Add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::surface::to_vec;
    use orbitmesh_geom::TriMesh;
    use orbitmesh_render::camera::{Intrinsics, OrbitView, SV3D_FOV_DEG};
    use orbitmesh_render::{Rasterizer, Scene};

    fn camera(res: u32) -> Camera {
        OrbitView {
            elevation_deg: 20.0,
            azimuth_deg: 30.0,
            radius: 2.0,
        }
        .camera(Intrinsics::from_fov(SV3D_FOV_DEG, res, res))
    }

    /// A closed, slightly irregular octahedron.
    fn octahedron() -> TriMesh {
        let positions = vec![
            [0.31, 0.02, 0.0],
            [-0.29, 0.0, 0.03],
            [0.01, 0.33, 0.0],
            [0.0, -0.27, -0.02],
            [0.02, 0.0, 0.35],
            [0.0, 0.03, -0.3],
        ];
        let faces = vec![
            [0, 2, 4],
            [2, 1, 4],
            [1, 3, 4],
            [3, 0, 4],
            [2, 0, 5],
            [1, 2, 5],
            [3, 1, 5],
            [0, 3, 5],
        ];
        TriMesh::new(positions, faces)
    }

    fn rasterize(mesh: &TriMesh, cam: &Camera) -> VisibilityBuffer {
        let scene = Scene::new(mesh, &mut Vec::new()).unwrap();
        Rasterizer::Cpu.rasterize(&scene, cam).unwrap()
    }

    #[test]
    fn projection_matches_the_rasterizers_camera() {
        let device = Device::flex();
        let mesh = octahedron();
        let cam = camera(64);
        let (screen, depth) = project(tensor2(mesh.positions.concat(), 3, &device), &cam);
        let (screen, depth) = (to_vec(screen), to_vec(depth));
        for (i, p) in mesh.positions.iter().enumerate() {
            let (x, y, d) = cam.project(nalgebra::Vector3::new(
                p[0].into(),
                p[1].into(),
                p[2].into(),
            ));
            assert!((f64::from(screen[2 * i]) - x).abs() < 1e-3);
            assert!((f64::from(screen[2 * i + 1]) - y).abs() < 1e-3);
            assert!((f64::from(depth[i]) - d).abs() < 1e-4);
        }
    }

    #[test]
    fn interpolated_barycentrics_match_the_rasterizer() {
        let device = Device::flex();
        let mesh = octahedron();
        let cam = camera(64);
        let vis = rasterize(&mesh, &cam);
        let (screen, depth) = project(tensor2(mesh.positions.concat(), 3, &device), &cam);
        // Attribute k of vertex v is 1 when k == v: the interpolated value is the barycentric.
        let n = mesh.positions.len();
        let eye: Vec<f32> = (0..n * n).map(|i| f32::from(i % (n + 1) == 0)).collect();
        let image = to_vec(interpolate(
            &screen,
            &depth,
            tensor2(eye, n, &device),
            &mesh.faces,
            &vis,
        ));
        let mut checked = 0;
        for (p, &t) in vis.triangle.iter().enumerate() {
            if t == NO_TRIANGLE {
                assert!(image[p * n..(p + 1) * n].iter().all(|&v| v == 0.0));
                continue;
            }
            let f = mesh.faces[t as usize];
            let [b1, b2] = vis.bary[p];
            let want = [1.0 - b1 - b2, b1, b2];
            for k in 0..3 {
                let got = image[p * n + f[k] as usize];
                assert!(
                    (got - want[k]).abs() < 2e-3,
                    "pixel {p}: {got} vs {}",
                    want[k]
                );
            }
            checked += 1;
        }
        assert!(checked > 300, "{checked}");
    }

    /// A triangle much larger than the pixels with one vertical edge at x = `edge`: the
    /// antialiased alpha of the pixels it cuts is the covered fraction of each.
    #[test]
    fn antialiased_alpha_is_the_covered_fraction_of_each_pixel_along_an_edge() {
        let device = Device::flex();
        for edge in [20.3f32, 20.5, 20.85, 21.1] {
            let screen_cpu = vec![[edge, -40.0], [edge, 100.0], [-60.0, 30.0]];
            let faces = vec![[0u32, 1, 2]];
            let (w, h) = (40u32, 40u32);
            let mut vis = VisibilityBuffer::empty(w, h);
            for y in 0..h as usize {
                for x in 0..w as usize {
                    if (x as f32 + 0.5) < edge {
                        vis.triangle[y * w as usize + x] = 0;
                        vis.depth[y * w as usize + x] = 1.0;
                    }
                }
            }
            let sil = Silhouettes::find(&faces, &EdgeFaces::new(&faces), &screen_cpu, &vis);
            assert_eq!(sil.len(), h as usize, "one pair per row");
            let alpha: Vec<f32> = vis.triangle.iter().map(|&t| f32::from(t == 0)).collect();
            let screen = tensor2(screen_cpu.concat(), 2, &device);
            let out = to_vec(sil.apply(tensor2(alpha, 1, &device), &screen));
            for x in 15..25usize {
                let covered = (edge - x as f32).clamp(0.0, 1.0);
                let got = out[10 * w as usize + x];
                assert!(
                    (got - covered).abs() < 1e-4,
                    "edge {edge}, pixel {x}: {got} vs {covered}"
                );
            }
        }
    }

    /// On a closed mesh, the antialiased coverage adds up to the area a finely supersampled
    /// rasterization covers: a bias here would move every silhouette the mask loss fits.
    #[test]
    fn antialiased_coverage_of_a_sphere_adds_up_to_its_projected_area() {
        let device = Device::flex();
        let mesh = orbitmesh_geom::shapes::uv_sphere(0.3, 48, 96);
        let scene = Scene::new(&mesh, &mut Vec::new()).unwrap();
        let res = 64;
        let cam = camera(res);
        let positions = tensor2(mesh.positions.concat(), 3, &device);
        let vis = Rasterizer::Cpu.rasterize(&scene, &cam).unwrap();
        let (screen, depth) = project(positions, &cam);
        let screen_values: Vec<[f32; 2]> = to_vec(screen.clone())
            .chunks(2)
            .map(|c| [c[0], c[1]])
            .collect();
        let ones = Tensor::ones([mesh.positions.len(), 1], &device);
        let plain = interpolate(&screen, &depth, ones, &mesh.faces, &vis);
        let edges = EdgeFaces::new(&mesh.faces);
        let sil = Silhouettes::find(&mesh.faces, &edges, &screen_values, &vis);
        let aa: f32 = to_vec(sil.apply(plain.clone(), &screen)).iter().sum();
        let binary: f32 = to_vec(plain).iter().sum();
        let fine = Camera {
            camera_to_world: cam.camera_to_world,
            intrinsics: cam.intrinsics.scaled(16),
        };
        let fine_vis = Rasterizer::Cpu.rasterize(&scene, &fine).unwrap();
        let exact = fine_vis
            .triangle
            .iter()
            .filter(|&&t| t != NO_TRIANGLE)
            .count() as f32
            / 256.0;
        // Pixel centres alone miss by 1.3% here; nvdiffrast's pairwise blend treats each pair's
        // stretch of outline as straight, which on this 16-pixel disc leaves about 1% (0.07 px
        // of its outline).
        assert!(
            (aa - exact).abs() < 0.012 * exact && (aa - exact).abs() < (binary - exact).abs(),
            "antialiased {aa} vs supersampled {exact} (binary {binary})"
        );
    }

    /// Gradients of interpolate + antialias with respect to vertex positions and attributes
    /// against central differences, with the rasterization held fixed.
    #[test]
    fn interpolate_and_antialias_gradients_match_finite_differences() {
        let mesh = octahedron();
        let cam = camera(48);
        let vis = rasterize(&mesh, &cam);
        let plain = Device::flex();
        let (screen0, _) = project(tensor2(mesh.positions.concat(), 3, &plain), &cam);
        let screen_cpu: Vec<[f32; 2]> = to_vec(screen0).chunks(2).map(|c| [c[0], c[1]]).collect();
        let sil = Silhouettes::find(&mesh.faces, &EdgeFaces::new(&mesh.faces), &screen_cpu, &vis);
        assert!(sil.len() > 40, "{} silhouette pairs", sil.len());
        let n = mesh.positions.len();
        let colours: Vec<f32> = (0..n * 4)
            .map(|i| {
                if i % 4 == 3 {
                    1.0
                } else {
                    ((i * 37) % 11) as f32 / 11.0
                }
            })
            .collect();
        let weights: Vec<f32> = (0..vis.triangle.len() * 4)
            .map(|i| ((i * 7919) % 23) as f32 / 23.0 - 0.5)
            .collect();
        let render = |pos: Tensor<2>, col: Tensor<2>| {
            let (screen, depth) = project(pos, &cam);
            let img = interpolate(&screen, &depth, col, &mesh.faces, &vis);
            sil.apply(img, &screen)
        };
        // Summed in f64 so the differences are not lost to rounding.
        let objective = |pos: &[f32], col: &[f32]| -> f64 {
            let img = render(
                tensor2(pos.to_vec(), 3, &plain),
                tensor2(col.to_vec(), 4, &plain),
            );
            to_vec(img)
                .iter()
                .zip(&weights)
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum()
        };
        let device = Device::flex().autodiff();
        let pos0 = mesh.positions.concat();
        let p = tensor2(pos0.clone(), 3, &device).require_grad();
        let c = tensor2(colours.clone(), 4, &device).require_grad();
        let grads = (render(p.clone(), c.clone()) * tensor2(weights.clone(), 4, &device))
            .sum()
            .backward();
        let gp = to_vec(p.grad(&grads).unwrap());
        let gc = to_vec(c.grad(&grads).unwrap());
        let h = 1e-3f32;
        for i in 0..pos0.len() {
            let (mut plus, mut minus) = (pos0.clone(), pos0.clone());
            plus[i] += h;
            minus[i] -= h;
            let fd =
                (objective(&plus, &colours) - objective(&minus, &colours)) / (2.0 * f64::from(h));
            let g = f64::from(gp[i]);
            assert!(
                (fd - g).abs() < 0.02 * (1.0 + fd.abs()),
                "position {i}: {g} vs {fd}"
            );
        }
        for i in (0..colours.len()).step_by(3) {
            let (mut plus, mut minus) = (colours.clone(), colours.clone());
            plus[i] += 1e-2;
            minus[i] -= 1e-2;
            let fd = (objective(&pos0, &plus) - objective(&pos0, &minus)) / 2e-2;
            let g = f64::from(gc[i]);
            assert!(
                (fd - g).abs() < 1e-2 * (1.0 + fd.abs()),
                "colour {i}: {g} vs {fd}"
            );
        }
        assert!(gp.iter().any(|g| g.abs() > 1e-2), "positions get gradients");
    }
}
