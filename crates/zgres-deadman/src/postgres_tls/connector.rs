//! tokio-postgres over rustls, verifying the server as libpq's `sslmode` says: not at all
//! without a CA file (`prefer`, `require`), the chain with one (and always for `verify-ca`),
//! chain and address for `verify-full`.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};
use tokio_postgres::Socket;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::crypto::{self, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    self, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use super::{PostgresTls, SslMode, TlsFileError};

/// The rustls configuration for `tls`, its files read now.
///
/// # Errors
/// [`TlsFileError`] naming the first file that cannot be used.
pub(super) fn client_config(tls: &PostgresTls) -> Result<ClientConfig, TlsFileError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports TLS 1.2 and 1.3")
        .dangerous();
    let chain = match &tls.root_cert {
        None => None,
        Some(file) => Some(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots(file)?), provider.clone())
                .build()
                .map_err(|e| TlsFileError::new("sslrootcert", file, e))?,
        ),
    };
    let verifier: Arc<dyn ServerCertVerifier> = match chain {
        Some(chain_and_name) if tls.mode == SslMode::VerifyFull => chain_and_name,
        chain => Arc::new(NameNotChecked { chain, provider }),
    };
    let builder = builder.with_custom_certificate_verifier(verifier);
    let Some(client) = &tls.client else {
        return Ok(builder.with_no_client_auth());
    };
    let pem = read("sslcert", &client.cert)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsFileError::new("sslcert", &client.cert, e))?;
    if chain.is_empty() {
        return Err(TlsFileError::new(
            "sslcert",
            &client.cert,
            "no CERTIFICATE in the file",
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(read("sslkey", &client.key)?.as_bytes())
        .map_err(|e| TlsFileError::new("sslkey", &client.key, e))?;
    builder.with_client_auth_cert(chain, key).map_err(|e| {
        TlsFileError::new(
            "sslkey",
            &client.key,
            format!("does not go with {}: {e}", client.cert.display()),
        )
    })
}

fn read(key: &'static str, path: &Path) -> Result<String, TlsFileError> {
    std::fs::read_to_string(path).map_err(|e| TlsFileError::new(key, path, e))
}

fn roots(file: &Path) -> Result<RootCertStore, TlsFileError> {
    let pem = read("sslrootcert", file)?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| TlsFileError::new("sslrootcert", file, e))?;
        roots
            .add(cert)
            .map_err(|e| TlsFileError::new("sslrootcert", file, e))?;
    }
    if roots.is_empty() {
        return Err(TlsFileError::new(
            "sslrootcert",
            file,
            "no CERTIFICATE in the file",
        ));
    }
    Ok(roots)
}

/// Below `verify-full`, as libpq: without a CA file (`prefer`, `require`) the server is not
/// checked; with one (`verify-ca`, and `prefer`/`require` given a CA) the chain must lead to
/// it, and the name in the certificate is not compared with the address. The handshake's
/// signatures are always verified (the server holds the certificate's key).
#[derive(Debug)]
struct NameNotChecked {
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for NameNotChecked {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        // The name is checked only after the chain: a name error means the chain held.
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Makes one TLS handshake per connection for tokio-postgres.
pub(super) struct Connector {
    config: Arc<ClientConfig>,
    /// For error messages: which CA the server was checked against, if any.
    root_cert: Option<String>,
}

impl Connector {
    /// A connector for `tls`, its files read now.
    pub(super) fn new(tls: &PostgresTls) -> Result<Self, TlsFileError> {
        Ok(Connector {
            config: Arc::new(client_config(tls)?),
            root_cert: tls.root_cert.as_ref().map(|f| f.display().to_string()),
        })
    }
}

impl MakeTlsConnect<Socket> for Connector {
    type Stream = TlsStream;
    type TlsConnect = Handshake;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, host: &str) -> Result<Handshake, Self::Error> {
        Ok(Handshake {
            config: self.config.clone(),
            server: ServerName::try_from(host.to_owned())?,
            root_cert: self.root_cert.clone(),
        })
    }
}

/// The handshake with one server.
pub(super) struct Handshake {
    config: Arc<ClientConfig>,
    server: ServerName<'static>,
    root_cert: Option<String>,
}

impl TlsConnect<Socket> for Handshake {
    type Stream = TlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TlsStream>> + Send>>;

    fn connect(self, socket: Socket) -> Self::Future {
        Box::pin(async move {
            let server = self.server.to_str().into_owned();
            tokio_rustls::TlsConnector::from(self.config)
                .connect(self.server, socket)
                .await
                .map(TlsStream)
                .map_err(|e| {
                    let checked = match &self.root_cert {
                        Some(file) => format!("postgres.sslrootcert = {file}"),
                        None => "server not verified: no postgres.sslrootcert".to_owned(),
                    };
                    let failed = HandshakeFailed(format!("{server}: {e} ({checked})"));
                    io::Error::new(e.kind(), failed)
                })
        })
    }
}

/// A TLS handshake failed: `server: reason (which CA)`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HandshakeFailed(String);

impl HandshakeFailed {
    /// The handshake failure inside `error` (a connection error tokio-postgres returned).
    pub(super) fn find(error: &tokio_postgres::Error) -> Option<&HandshakeFailed> {
        let mut cause = std::error::Error::source(error);
        while let Some(e) = cause {
            if let Some(io) = e.downcast_ref::<io::Error>() {
                if let Some(failed) = io.get_ref().and_then(|i| i.downcast_ref()) {
                    return Some(failed);
                }
            }
            cause = e.source();
        }
        None
    }
}

/// A TLS connection to a PostgreSQL server.
pub struct TlsStream(tokio_rustls::client::TlsStream<Socket>);

impl tokio_postgres::tls::TlsStream for TlsStream {
    /// None: SCRAM then runs without channel binding (`SCRAM-SHA-256`, not `-PLUS`), as
    /// libpq's default `channel_binding = prefer` allows.
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
