//! Run-time choice of the instruction set the CPU kernels are compiled for. Each kernel has an
//! `#[inline(always)]` body and thin `#[target_feature]` wrappers around it: the body is compiled
//! once per instruction set, and the widest the CPU has is called.

/// The instruction sets the kernels are compiled for.
#[derive(Clone, Copy)]
pub(crate) enum Isa {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Plain,
}

/// The widest instruction set this CPU has.
pub(crate) fn isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
            return Isa::Avx512;
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return Isa::Avx2;
        }
    }
    Isa::Plain
}
