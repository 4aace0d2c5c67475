//! Prints the Vulkan adapter orbitmesh's GPU path gets (the rasterizer's and, through
//! `CUBECL_WGPU_DEFAULT_DEVICE`'s default, burn's): its name, type and driver, the limits that
//! bound the largest tensor and kernel launch, and the features that decide the fast paths
//! (f16 shaders, subgroups, cooperative matrices for tensor cores). For `scripts/gpu-check.sh`.
//!
//! cargo run --release --example gpu_info

use std::process::ExitCode;

fn main() -> ExitCode {
    let adapter = match orbitmesh_render::raster::vulkan_adapter() {
        Ok(adapter) => adapter,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let info = adapter.get_info();
    println!(
        "adapter: {} ({:?}, {:?})",
        info.name, info.device_type, info.backend
    );
    println!("driver: {} {}", info.driver, info.driver_info);
    let limits = adapter.limits();
    println!(
        "limits: max_storage_buffer_binding_size {}, max_buffer_size {}, \
         max_compute_workgroup_storage_size {}, max_compute_invocations_per_workgroup {}, \
         max_compute_workgroups_per_dimension {}",
        limits.max_storage_buffer_binding_size,
        limits.max_buffer_size,
        limits.max_compute_workgroup_storage_size,
        limits.max_compute_invocations_per_workgroup,
        limits.max_compute_workgroups_per_dimension,
    );
    let features = format!("{:?}", adapter.features());
    for wanted in ["SHADER_F16", "SUBGROUP", "COOPERATIVE_MATRIX"] {
        println!(
            "feature {wanted}: {}",
            if features.contains(wanted) {
                "yes"
            } else {
                "no"
            }
        );
    }
    println!("features: {features}");
    ExitCode::SUCCESS
}
