//! The wgpu rasterizer against its CPU twin, on the textured GSO bowl. Needs a Vulkan adapter:
//! in CI, Mesa's llvmpipe (Debian package mesa-vulkan-drivers, installed by .ci/run).

use std::path::Path;

use orbitmesh_geom::{UpAxis, read_mesh};
use orbitmesh_render::camera::{Intrinsics, OrbitView, SV3D_FOV_DEG};
use orbitmesh_render::raster::{NO_TRIANGLE, rasterize_cpu};
use orbitmesh_render::shade::shade_rgba;
use orbitmesh_render::{Background, Camera, GpuRasterizer, Scene};

#[test]
fn gpu_and_cpu_render_the_same_pictures() {
    if !orbitmesh_render::gpu_tests::gpu_or_skip() {
        return;
    }
    let gpu = GpuRasterizer::new().unwrap_or_else(|e| {
        panic!("no Vulkan adapter ({e}); install mesa-vulkan-drivers for llvmpipe")
    });
    eprintln!("adapter: {}", gpu.adapter_name());
    let bowl = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/gso-mini/GSO_bead_bowl");
    let mut mesh = read_mesh(&bowl).unwrap().mesh;
    mesh.normalise(UpAxis::Z);
    let scene = Scene::new(&mesh, &mut Vec::new()).unwrap();
    let res = 192;
    for (elevation_deg, azimuth_deg) in [(10.0, 0.0), (40.0, 137.0)] {
        let cam = OrbitView {
            elevation_deg,
            azimuth_deg,
            radius: 2.0,
        }
        .camera(Intrinsics::from_fov(SV3D_FOV_DEG, res, res));
        let ssaa = Camera {
            intrinsics: cam.intrinsics.scaled(2),
            ..cam
        };
        let (c, g) = (
            rasterize_cpu(&scene, &ssaa),
            gpu.rasterize(&scene, &ssaa).unwrap(),
        );
        assert!(c.covered() > 10_000, "the bowl is in view");
        let bg = Background::Colour([1.0; 3]);
        let (ci, gi) = (
            shade_rgba(&scene, &c, &ssaa, 2, bg),
            shade_rgba(&scene, &g, &ssaa, 2, bg),
        );
        let close = ci
            .pixels()
            .zip(gi.pixels())
            .filter(|(a, b)| (0..4).all(|k| a[k].abs_diff(b[k]) <= 2))
            .count();
        let fraction = close as f64 / f64::from(res * res);
        assert!(fraction >= 0.995, "{fraction:.4} of pixels within 2/255");

        // Triangle ids agree wherever the 3×3 neighbourhood is one triangle (away from edges).
        let (w, h) = (c.width as usize, c.height as usize);
        let (mut interior, mut same) = (0, 0);
        for y in 1..h - 1 {
            for x in 1..w - 1 {
                let t = c.triangle[y * w + x];
                let uniform = (0..9).all(|k| c.triangle[(y + k / 3 - 1) * w + x + k % 3 - 1] == t);
                if uniform && t != NO_TRIANGLE {
                    interior += 1;
                    same += usize::from(g.triangle[y * w + x] == t);
                    let (bc, bg) = (c.bary[y * w + x], g.bary[y * w + x]);
                    assert!((bc[0] - bg[0]).abs() < 1e-3 && (bc[1] - bg[1]).abs() < 1e-3);
                    assert!((c.depth[y * w + x] - g.depth[y * w + x]).abs() < 1e-4);
                }
            }
        }
        eprintln!(
            "view ({elevation_deg}, {azimuth_deg}): {fraction:.5} of pixels within 2/255, \
             {same}/{interior} interior ids equal"
        );
        assert!(interior > 1000);
        assert_eq!(same, interior, "triangle ids differ away from edges");
    }
}
