//! The radiance MLPs on the GPU, and the test that holds them to the CPU kernel.

use burn_cubecl::CubeBackend;

use super::RadianceMlpOps;

// No CubeCL kernel of its own: the GPU takes the trait's default bodies (`plain.rs`, burn's own
// ops), which burn's fusion merges. The implementation lives here, where each op's GPU side does.
impl RadianceMlpOps for CubeBackend {}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use crate::ops::mlp::radiance_mlp;
    use crate::ops::mlp::tests::{inputs, run, worst};

    #[test]
    fn gpu_ops_match_the_cpu_kernel() {
        if !orbitmesh_render::gpu_tests::gpu_or_skip() {
            return;
        }
        let inputs = inputs(2);
        let cpu = run(&inputs, &Device::flex().autodiff(), radiance_mlp);
        let gpu_device = Device::wgpu(burn::tensor::DeviceKind::DefaultDevice).autodiff();
        let gpu = run(&inputs, &gpu_device, radiance_mlp);
        let differences = worst(&gpu, &cpu);
        eprintln!("MLP op, GPU against CPU (output, encoding, 5 weights): {differences:?}");
        assert!(differences.iter().all(|d| *d <= 1e-5), "{differences:?}");
    }
}
