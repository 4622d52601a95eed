//! Who zgresctl is to ZooKeeper: the digest identity from its options, and the ACL id of an
//! identity for the deadmen's `readers`.

use std::path::Path;

use crate::error::{CtlError, Usage};

/// The first line of `file`, a password.
///
/// # Errors
/// [`Usage::EditFile`] when it cannot be read.
fn password_from(file: &Path) -> Result<String, CtlError> {
    let text = std::fs::read_to_string(file).map_err(|source| Usage::EditFile {
        path: file.to_owned(),
        source,
    })?;
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

/// The identity from `--zk-user` and `--zk-password-file` (both or neither), authenticated
/// with SASL DIGEST-MD5 when `sasl`, else with the digest scheme.
///
/// # Errors
/// [`Usage::ZkAuth`] when only one is given; [`Usage::EditFile`] when the file cannot be read.
pub fn from_options(
    user: Option<&str>,
    password_file: Option<&Path>,
    sasl: bool,
) -> Result<Option<zgres_zk::DigestAuth>, CtlError> {
    match (user, password_file) {
        (None, None) => Ok(None),
        (Some(user), Some(file)) => Ok(Some(zgres_zk::DigestAuth {
            user: user.to_owned(),
            password: zgres_config::Secret::new(password_from(file)?),
            mechanism: if sasl {
                zgres_zk::Mechanism::SaslDigestMd5
            } else {
                zgres_zk::Mechanism::Digest
            },
        })),
        _ => Err(Usage::ZkAuth.into()),
    }
}

/// TLS to ZooKeeper from `--zk-tls-ca`, `--zk-tls-cert` and `--zk-tls-key`, the files read
/// and checked now.
///
/// # Errors
/// [`Usage::ZkTlsOptions`] for a certificate without its key (or the reverse) or without a
/// CA; [`Usage::ZkTlsFile`] naming the option and the file that cannot be used.
pub fn tls_from_options(
    ca: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Option<zgres_zk::ZkTls>, CtlError> {
    let identity = match (cert, key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(Usage::ZkTlsOptions {
                option: "--zk-tls-cert",
                reason: "needs --zk-tls-key",
            }
            .into())
        }
        (None, Some(_)) => {
            return Err(Usage::ZkTlsOptions {
                option: "--zk-tls-key",
                reason: "needs --zk-tls-cert",
            }
            .into())
        }
    };
    let Some(ca) = ca else {
        return match identity {
            Some(_) => Err(Usage::ZkTlsOptions {
                option: "--zk-tls-ca",
                reason: "a client certificate needs the CA of the servers' certificates",
            }
            .into()),
            None => Ok(None),
        };
    };
    zgres_zk::ZkTls::load(ca, identity)
        .map(Some)
        .map_err(|source| {
            let option = match source.key {
                "tls_cert_file" => "--zk-tls-cert",
                "tls_key_file" => "--zk-tls-key",
                _ => "--zk-tls-ca",
            };
            Usage::ZkTlsFile { option, source }.into()
        })
}

/// The ACL id (`digest:USER:HASH`) of `user` with the password in `password_file`.
///
/// # Errors
/// [`Usage::EditFile`] when the file cannot be read.
pub fn digest_of(user: &str, password_file: &Path) -> Result<String, CtlError> {
    Ok(zgres_zk::digest_id(user, &password_from(password_file)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_the_files_first_line_and_options_go_together() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "test\nignored\n").unwrap();
        assert_eq!(
            digest_of("super", &file).unwrap(),
            "digest:super:D/InIHSb7yEEbrWz8b9l71RjZJU="
        );
        assert!(from_options(Some("zgres"), None, false).is_err());
        assert!(from_options(None, Some(&file), false).is_err());
        let auth = from_options(Some("zgres"), Some(&file), false)
            .unwrap()
            .unwrap();
        assert_eq!(auth.password.expose(), "test");
        let missing = digest_of("x", &dir.path().join("missing")).unwrap_err();
        assert!(missing.to_string().contains("missing"), "{missing}");
    }
}
