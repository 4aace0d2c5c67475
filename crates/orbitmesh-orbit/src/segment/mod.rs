//! Finding the object in a photo without an alpha channel: the learned IS-Net segmenter
//! ([`isnet`]) and installing its weights ([`install`]). The classical background model lives in
//! [`crate::prepare`].

pub mod install;
pub mod isnet;

pub use install::InstallError;
pub use isnet::IsNet;
