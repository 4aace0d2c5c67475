//! `orbitmesh serve`: the web app and HTTP API of crates/orbitmesh-serve on a local port.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use orbitmesh_serve::{ServeConfig, Server, check_address};

use crate::input::DeviceArg;

#[derive(Args)]
#[command(
    after_help = "Open the address it prints in a browser: drop a photo, follow the stages, turn the \
mesh around, download it. The API the page uses is in the README (curl examples). Jobs live in \
--work, one folder each: a restarted server lists them and finishes the unfinished ones."
)]
pub struct ServeArgs {
    /// Address to listen on; other than loopback only with --token
    #[arg(long, default_value = "127.0.0.1:7860")]
    addr: SocketAddr,
    /// Work folder: one folder per job
    #[arg(long, default_value = "orbitmesh-serve")]
    work: PathBuf,
    /// Jobs run at once (each uses every core); the others wait in order
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    jobs: u64,
    /// A token every request must carry (`Authorization: Bearer TOKEN`, or open the page as
    /// /?token=TOKEN)
    #[arg(long, env = "ORBITMESH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Largest photo accepted: bytes, or with KB, MB, KiB or MiB
    #[arg(long, default_value = "32MB", value_parser = parse_bytes)]
    max_upload: usize,
    /// SV3D's weights (sv3d_p.safetensors), which jobs may then use
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Where jobs rasterize and run their tensors
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
}

fn parse_bytes(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size such as 32MB"))?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        _ => return Err(format!("`{unit}`: use bytes, KB, MB, KiB or MiB")),
    };
    match number.checked_mul(scale) {
        Some(0) | None => Err(format!("`{text}` is not a size such as 32MB")),
        Some(bytes) => Ok(bytes),
    }
}

pub fn run(args: ServeArgs) -> Result<ExitCode> {
    check_address(&args.addr, args.token.as_deref())?;
    if let Some(weights) = &args.weights
        && !weights.is_file()
    {
        anyhow::bail!("{}: no such weights file", weights.display());
    }
    let server = Server::open(ServeConfig {
        work: args.work.clone(),
        jobs: args.jobs as usize,
        token: args.token.clone(),
        max_upload: args.max_upload,
        weights: args.weights.clone(),
        device: args.device.into(),
    })?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the server's runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("{}: cannot listen on this address", args.addr))?;
        let addr = listener.local_addr()?;
        let counts: Vec<String> = server
            .counts()
            .iter()
            .map(|(state, n)| format!("{n} {}", state.name()))
            .collect();
        println!(
            "orbitmesh serve: http://{addr}/{} (work folder {}, {} job{} at a time{}{})",
            if args.token.is_some() {
                "?token=…"
            } else {
                ""
            },
            args.work.display(),
            args.jobs,
            if args.jobs == 1 { "" } else { "s" },
            if counts.is_empty() { "" } else { "; jobs: " },
            counts.join(", ")
        );
        // Ctrl-C ends the process at once, running jobs with it, as a kill would: their stage
        // folders are published whole or not at all, so the next server finishes them. (A
        // graceful stop would wait for every open event stream, that is for every job.)
        tokio::select! {
            served = axum::serve(listener, server.router()) => {
                served.context("the server stopped")?;
                Ok(ExitCode::SUCCESS)
            }
            _ = tokio::signal::ctrl_c() => {
                // Not println!: standard output may be a pipe its reader has closed.
                let _ = writeln!(
                    std::io::stdout(),
                    "orbitmesh serve: stopped; unfinished jobs go on when it starts again on {}",
                    args.work.display()
                );
                Ok(ExitCode::from(130))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_limits_read_as_people_write_them() {
        assert_eq!(parse_bytes("32MB"), Ok(32_000_000));
        assert_eq!(parse_bytes("1 MiB"), Ok(1 << 20));
        assert_eq!(parse_bytes("500"), Ok(500));
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("12 parsecs").is_err());
        assert!(parse_bytes("MB").is_err());
    }
}
