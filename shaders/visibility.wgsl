// Visibility buffer: for each pixel, the nearest triangle (id + 1, 0 = none) and the
// perspective-correct barycentrics (b1, b2) of the pixel centre. Both windings are drawn.
// Launched by crates/orbitmesh-render/src/raster/gpu.rs; its CPU twin is raster/cpu.rs.

struct Uniforms {
    clip_from_world: mat4x4<f32>,
}

@group(0) @binding(0) var<uniform> u: Uniforms;

struct Varyings {
    @builtin(position) position: vec4<f32>,
    // Perspective-correct interpolation (the default) of one-hot corner weights gives the
    // perspective-correct barycentrics.
    @location(0) bary: vec3<f32>,
    @location(1) @interpolate(flat) face: u32,
}

@vertex
fn vs_main(@location(0) position: vec3<f32>, @location(1) face: u32, @location(2) corner: u32) -> Varyings {
    var out: Varyings;
    out.position = u.clip_from_world * vec4<f32>(position, 1.0);
    out.bary = vec3<f32>(f32(corner == 0u), f32(corner == 1u), f32(corner == 2u));
    out.face = face;
    return out;
}

struct Targets {
    @location(0) id: u32,
    @location(1) bary: vec2<f32>,
}

@fragment
fn fs_main(v: Varyings) -> Targets {
    var out: Targets;
    out.id = v.face + 1u;
    out.bary = v.bary.yz;
    return out;
}
