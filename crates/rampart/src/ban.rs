//! `rampart ban list|add|del`: bans through the admin API of the running process, found (with
//! its token) in the config file.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use clap::Subcommand;
use http_body_util::{BodyExt, Full};

#[derive(Subcommand)]
pub enum BanCommand {
    /// List bans in force.
    List,
    /// Ban an address by hand (refused for allow-listed addresses).
    Add {
        /// IPv4 or IPv6 address.
        ip: std::net::IpAddr,
        /// How long, such as "10m" or "2h".
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
    /// Lift the ban on an address.
    Del { ip: std::net::IpAddr },
}

pub fn run(config: &Path, command: BanCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rampart ban: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(execute(config, command)) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rampart ban: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn execute(config: &Path, command: BanCommand) -> anyhow::Result<String> {
    let snapshot = rampart_config::load_file(config)
        .map_err(|errors| anyhow!("{}: {} error(s):\n{errors}", config.display(), errors.len()))?;
    let admin = snapshot.admin.as_ref().ok_or_else(|| {
        anyhow!(
            "{} has no [admin] section; bans are managed through the admin API",
            config.display()
        )
    })?;
    let (method, path, body) = match &command {
        BanCommand::List => ("GET", "/api/v1/bans".to_string(), String::new()),
        BanCommand::Add { ip, ttl } => (
            "POST",
            "/api/v1/bans".to_string(),
            serde_json::json!({ "ip": ip.to_string(), "ttl": ttl }).to_string(),
        ),
        BanCommand::Del { ip } => ("DELETE", format!("/api/v1/bans/{ip}"), String::new()),
    };
    let (status, answer) = call(admin.address, admin.token.expose(), method, &path, body).await?;
    let json: serde_json::Value = serde_json::from_slice(&answer)
        .with_context(|| format!("the admin API answered {status} with no JSON"))?;
    if !status.is_success() {
        bail!(
            "{}",
            json["error"]
                .as_str()
                .unwrap_or("the admin API refused the request")
        );
    }
    Ok(match command {
        BanCommand::List => {
            let bans = json["bans"].as_array().cloned().unwrap_or_default();
            let mut out = format!(
                "{:<40} {:<24} {:>7} {:>10} {:>10}\n",
                "ADDRESS", "REASON", "OFFENCE", "TTL_S", "LEFT_S"
            );
            for b in &bans {
                out.push_str(&format!(
                    "{:<40} {:<24} {:>7} {:>10} {:>10}\n",
                    b["ip"].as_str().unwrap_or("?"),
                    b["reason"].as_str().unwrap_or("?"),
                    b["offence"].as_u64().unwrap_or(0),
                    b["ttl_seconds"].as_u64().unwrap_or(0),
                    b["remaining_seconds"].as_u64().unwrap_or(0),
                ));
            }
            out.push_str(&format!("{} ban(s)\n", bans.len()));
            out
        }
        BanCommand::Add { .. } => format!(
            "banned {} for {} s\n",
            json["ban"]["ip"].as_str().unwrap_or("?"),
            json["ban"]["ttl_seconds"].as_u64().unwrap_or(0)
        ),
        BanCommand::Del { .. } => format!(
            "lifted the ban on {}\n",
            json["lifted"]["ip"].as_str().unwrap_or("?")
        ),
    })
}

/// One request to the admin API over HTTP/1.1.
async fn call(
    address: SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    body: String,
) -> anyhow::Result<(http::StatusCode, Bytes)> {
    let stream = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(address),
    )
    .await
    .map_err(|_| anyhow!("admin API at {address}: connect timed out"))?
    .with_context(|| format!("admin API at {address} (is Rampart running?)"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, address.to_string())
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))?;
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .map_err(|_| anyhow!("admin API at {address}: no answer within 10 s"))??;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok((status, bytes))
}
