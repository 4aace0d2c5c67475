//! For tests that need a GPU adapter, in every crate: on a machine without one they skip with one
//! line saying what is missing and how to get it, so `cargo test` passes on a fresh machine; CI
//! installs llvmpipe and sets `ORBITMESH_REQUIRE_GPU_TESTS=1`, where a missing adapter fails.

use std::sync::OnceLock;

/// Set to 1 where a GPU test must not skip.
pub const REQUIRE_GPU_TESTS: &str = "ORBITMESH_REQUIRE_GPU_TESTS";

/// Whether a GPU test can run here. Without a Vulkan adapter: prints one skip line (on stderr,
/// which the test harness shows with `--nocapture`) and returns false, or panics where
/// [`REQUIRE_GPU_TESTS`] is 1. The adapter is looked for once per process.
pub fn gpu_or_skip() -> bool {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    let probe = PROBE.get_or_init(|| {
        crate::raster::vulkan_adapter()
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    let Err(why) = probe else {
        return true;
    };
    let line = format!(
        "skipped: no GPU adapter ({why}); install Mesa's software Vulkan driver \
         (apt-get install mesa-vulkan-drivers) or a GPU's Vulkan driver to run it"
    );
    if std::env::var(REQUIRE_GPU_TESTS).is_ok_and(|v| v == "1") {
        panic!("{line}, and {REQUIRE_GPU_TESTS}=1 forbids skipping");
    }
    eprintln!("{line}");
    false
}
