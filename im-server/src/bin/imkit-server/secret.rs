//! The token secret and how login tokens are checked. The secret comes
//! from `--secret`, the config file's `secret`, or the secret file. Only
//! the server creates that file (32 random bytes in hex, mode 0600, never
//! overwritten); `imkit-server token` reads it and refuses to invent one,
//! because a token signed with a secret the server does not have is
//! useless.

use std::io::Write;
use std::path::{Path, PathBuf};

use imkit_core::auth::{JwtAlgorithm, JwtAuthenticator};
use imkit_server::ServerError;

use crate::args::{Cli, FileConfig, RunArgs};

/// Whether a missing secret file may be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IfMissing {
    Create,
    Refuse,
}

/// How login tokens are checked: HS256 JWTs with the shared secret (and
/// imkit's older `v1.` tokens), or JWTs signed elsewhere and checked with a
/// public key; with an audience if one is configured.
pub(crate) fn login_tokens(
    args: &RunArgs,
    file: &FileConfig,
    secret: Vec<u8>,
    clock: imkit_core::Clock,
) -> Result<JwtAuthenticator, ServerError> {
    let jwt = match args.jwt_public_key.clone().or(file.jwt_public_key.clone()) {
        Some(path) => {
            let pem = std::fs::read(&path)
                .map_err(|e| ServerError::Config(format!("cannot read {}: {e}", path.display())))?;
            let alg = match args
                .jwt_algorithm
                .clone()
                .or(file.jwt_algorithm.clone())
                .unwrap_or_else(|| "eddsa".into())
                .to_ascii_lowercase()
                .as_str()
            {
                "eddsa" => JwtAlgorithm::EdDsa,
                "rs256" => JwtAlgorithm::Rs256,
                other => {
                    return Err(ServerError::Config(format!(
                        "--jwt-algorithm {other}: expected eddsa or rs256"
                    )));
                }
            };
            tracing::info!(key = %path.display(), ?alg, "login tokens checked with a public key");
            JwtAuthenticator::public_key(alg, &pem, clock)?
        }
        None => JwtAuthenticator::hs256(secret, clock)?,
    };
    Ok(
        match args.jwt_audience.clone().or(file.jwt_audience.clone()) {
            Some(aud) => jwt.with_audience(&aud),
            None => jwt,
        },
    )
}

/// The secret from the flag, the file's `secret`, or the secret file.
pub(crate) fn secret(
    cli: &Cli,
    file: &FileConfig,
    missing: IfMissing,
) -> Result<Vec<u8>, ServerError> {
    if let Some(s) = cli.secret.clone().or_else(|| file.secret.clone()) {
        return Ok(s.into_bytes());
    }
    let path = cli
        .secret_file
        .clone()
        .or_else(|| file.secret_file.clone())
        .unwrap_or_else(|| PathBuf::from("imkit.secret"));
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            warn_if_shared(&path);
            if s.trim().is_empty() {
                return Err(ServerError::Config(format!("{} is empty", path.display())));
            }
            Ok(s.trim().as_bytes().to_vec())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match missing {
            IfMissing::Create => create(&path),
            IfMissing::Refuse => Err(ServerError::Config(format!(
                "no token secret at {}: give the server's --config, --secret-file or \
                 --secret (IMKIT_SECRET); a new secret here would sign tokens the \
                 server rejects",
                path.display()
            ))),
        },
        Err(e) => Err(ServerError::Config(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// Creates the secret file, readable by its owner only.
fn create(path: &Path) -> Result<Vec<u8>, ServerError> {
    use rand::Rng;
    let bytes: [u8; 32] = rand::rng().random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options
        .open(path)
        .map_err(|e| ServerError::Config(format!("cannot create {}: {e}", path.display())))?;
    f.write_all(hex.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| ServerError::Config(format!("cannot write {}: {e}", path.display())))?;
    tracing::info!(path = %path.display(), "created a new token secret (mode 0600); keep it out of version control");
    Ok(hex.into_bytes())
}

/// Warns when others than the owner may read the secret.
fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{mode:o}"),
                    "the token secret is readable by other users; run chmod 600 on it"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}
