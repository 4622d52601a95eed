use std::os::unix::fs::PermissionsExt;

use super::*;

fn validate(settings: TlsSettings) -> Result<PostgresTls, String> {
    let mut problems = zgres_config::Problems::default();
    let tls = settings.validate(nix::unistd::Uid::effective(), &mut problems);
    match tls {
        Some(tls) if problems.is_empty() => Ok(tls),
        _ => Err(problems
            .iter()
            .map(|p| format!("{}: {}", p.key, p.reason))
            .collect::<Vec<_>>()
            .join("\n")),
    }
}

#[test]
fn sslmode_takes_libpq_values_but_allow() {
    for text in ["disable", "prefer", "require", "verify-ca", "verify-full"] {
        assert_eq!(text.parse::<SslMode>().unwrap().as_libpq(), text);
    }
    assert!("allow".parse::<SslMode>().is_err());
    assert!("VERIFY-FULL".parse::<SslMode>().is_err());
    let refused = validate(TlsSettings {
        sslmode: Some("allow".into()),
        ..TlsSettings::default()
    })
    .unwrap_err();
    assert_eq!(
        refused,
        "postgres.sslmode: \"allow\" is not one of disable, prefer, require, verify-ca, verify-full"
    );
}

#[test]
fn nothing_set_is_libpqs_default_prefer() {
    let tls = validate(TlsSettings::default()).unwrap();
    assert_eq!(tls, PostgresTls::default());
    assert_eq!(tls.mode, SslMode::Prefer);
    assert_eq!(tls.libpq_params(), " sslmode=prefer");
}

#[test]
fn verifying_modes_need_a_ca_file() {
    for mode in ["verify-ca", "verify-full"] {
        let refused = validate(TlsSettings {
            sslmode: Some(mode.into()),
            ..TlsSettings::default()
        })
        .unwrap_err();
        assert!(
            refused.starts_with("postgres.sslrootcert: required with sslmode"),
            "{refused}"
        );
    }
}

#[test]
fn a_certificate_needs_its_key_and_the_other_way_round() {
    let cert_only = validate(TlsSettings {
        sslcert: Some("/etc/c.crt".into()),
        ..TlsSettings::default()
    });
    assert_eq!(
        cert_only.unwrap_err(),
        "postgres.sslkey: required with sslcert"
    );
    let key_only = validate(TlsSettings {
        sslkey: Some("/etc/c.key".into()),
        ..TlsSettings::default()
    });
    assert_eq!(
        key_only.unwrap_err(),
        "postgres.sslcert: required with sslkey"
    );
}

#[test]
fn files_must_be_absolute_and_hold_what_they_should() {
    let relative = validate(TlsSettings {
        sslmode: Some("verify-ca".into()),
        sslrootcert: Some("ca.crt".into()),
        ..TlsSettings::default()
    });
    assert_eq!(
        relative.unwrap_err(),
        "postgres.sslrootcert: give the file's absolute path"
    );
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("ca.crt");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    let refused = validate(TlsSettings {
        sslmode: Some("verify-full".into()),
        sslrootcert: Some(not_pem.clone()),
        ..TlsSettings::default()
    })
    .unwrap_err();
    assert_eq!(
        refused,
        format!(
            "postgres.sslrootcert: postgres.sslrootcert = {}: no CERTIFICATE in the file",
            not_pem.display()
        )
    );
    let missing = dir.path().join("missing.crt");
    let refused = validate(TlsSettings {
        sslmode: Some("require".into()),
        sslrootcert: Some(missing.clone()),
        ..TlsSettings::default()
    })
    .unwrap_err();
    assert!(
        refused.contains(&missing.display().to_string()),
        "{refused}"
    );
    // Disabled, the files are not read.
    assert!(validate(TlsSettings {
        sslmode: Some("disable".into()),
        sslrootcert: Some(missing),
        ..TlsSettings::default()
    })
    .is_ok());
}

#[test]
fn a_key_libpq_would_refuse_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("client.key");
    std::fs::write(&key, "x").unwrap();
    let me = nix::unistd::Uid::effective();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let refused = key_mode::check(&key, me).unwrap_err().to_string();
    assert_eq!(
        refused,
        "libpq refuses a key its owner's group may access (mode 640): chmod 0600"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o604)).unwrap();
    assert!(key_mode::check(&key, me).is_err());
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(key_mode::check(&key, me).is_ok());
    let refused = validate(TlsSettings {
        sslcert: Some(dir.path().join("client.crt")),
        sslkey: Some(key.clone()),
        ..TlsSettings::default()
    })
    .unwrap_err();
    // The key passes; the certificate beside it does not exist.
    assert!(refused.starts_with("postgres.sslcert: "), "{refused}");
}

#[test]
fn libpq_gets_every_file_quoted() {
    let tls = PostgresTls {
        mode: SslMode::VerifyFull,
        root_cert: Some("/etc/zgres/pg ca.crt".into()),
        client: Some(ClientCertificate {
            cert: "/etc/zgres/client.crt".into(),
            key: "/etc/zgres/client.key".into(),
        }),
    };
    assert_eq!(
        tls.libpq_params(),
        " sslmode=verify-full sslrootcert='/etc/zgres/pg ca.crt' \
         sslcert='/etc/zgres/client.crt' sslkey='/etc/zgres/client.key'"
    );
}
