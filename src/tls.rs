//! TLS 1.3 for the HTTPS listener: the configured certificate, or a self-signed one
//! generated once with rcgen and kept in `data_dir/tls`.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::store::crypto::write_private_file;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
    #[error("the certificate and key do not form a usable TLS configuration: {0}")]
    Config(String),
}

/// Installs aws-lc-rs as the process-wide rustls provider (the binary builds exactly
/// one provider; see Cargo.toml). Safe to call more than once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Where the self-signed pair lives, inside the data directory.
pub fn self_signed_dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("tls")
}

/// The self-signed certificate, which the command-line tools trust to reach the local
/// server over HTTPS.
pub fn self_signed_cert(data_dir: &Path) -> std::path::PathBuf {
    self_signed_dir(data_dir).join(CERT_FILE)
}

const CERT_FILE: &str = "cert.pem";

/// Builds the server configuration from `files` (cert, key) or from the self-signed
/// pair in `tls_dir`, generating it on first use.
pub fn server_config(
    files: Option<(&Path, &Path)>,
    tls_dir: &Path,
) -> Result<Arc<ServerConfig>, TlsError> {
    install_crypto_provider();
    let (cert_path, key_path) = match files {
        Some((cert, key)) => (cert.to_owned(), key.to_owned()),
        None => {
            let cert = tls_dir.join(CERT_FILE);
            let key = tls_dir.join("key.pem");
            if !cert.exists() || !key.exists() {
                generate_self_signed(tls_dir, &cert, &key)?;
            }
            (cert, key)
        }
    };
    let file_error = |path: &Path, message: String| TlsError::File {
        path: path.display().to_string(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| file_error(&cert_path, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(&cert_path, e.to_string()))?;
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| file_error(&key_path, e.to_string()))?;
    let mut config = ServerConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn generate_self_signed(dir: &Path, cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    std::fs::create_dir_all(dir).map_err(|e| TlsError::File {
        path: dir.display().to_string(),
        message: e.to_string(),
    })?;
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let certified =
        rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Generate(e.to_string()))?;
    let write = |path: &Path, text: String| -> Result<(), TlsError> {
        let _ = std::fs::remove_file(path);
        write_private_file(path, text.as_bytes()).map_err(|e| TlsError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    };
    write(key_path, certified.signing_key.serialize_pem())?;
    write(cert_path, certified.cert.pem())?;
    tracing::info!(cert = %cert_path.display(), "generated a self-signed TLS certificate");
    Ok(())
}
