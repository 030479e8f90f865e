//! `presta-reconciler probe`: a container health check that needs no curl in the image. It
//! asks the daemon's `/healthz` (or `/readyz` with `--ready`) over plain HTTP/1.0 and exits 0
//! on `200`, 1 otherwise.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The daemon's address.
    #[arg(long, default_value = "127.0.0.1:9480", env = "PRESTA_LISTEN")]
    address: SocketAddr,
    /// Check readiness (`/readyz`) instead of liveness (`/healthz`).
    #[arg(long)]
    ready: bool,
    /// Seconds before giving up.
    #[arg(long, default_value_t = 3)]
    timeout: u64,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    // A daemon bound to every interface answers on loopback too.
    let mut address = args.address;
    if address.ip().is_unspecified() {
        address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let path = if args.ready { "/readyz" } else { "/healthz" };
    match get(address, path, Duration::from_secs(args.timeout)) {
        Ok((200, _)) => Ok(ExitCode::SUCCESS),
        Ok((status, body)) => {
            eprintln!("{path} answered {status}: {}", body.trim());
            Ok(ExitCode::from(1))
        }
        Err(e) => {
            eprintln!("{path}: no answer from {address}: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

fn get(address: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&address, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    stream.take(64 * 1024).read_to_string(&mut raw)?;
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP answer"))?;
    let body = raw.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    Ok((status, body))
}
