//! How a test group's programs and the test's own clients reach ZooKeeper: the
//! authentication of a client, and the `[zookeeper]` TLS keys of a TLS-only server.

use zookeeper_client as zk;

use crate::zookeeper::ZkCluster;

/// `connector` authenticating as `credentials` (`user:password`), with SASL DIGEST-MD5 when
/// `sasl`, else with the digest scheme; unchanged without credentials.
pub fn authenticate(
    connector: zk::Connector,
    credentials: Option<&str>,
    sasl: bool,
) -> zk::Connector {
    match credentials {
        None => connector,
        Some(credentials) if sasl => {
            let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
            connector.with_sasl(zk::SaslOptions::digest_md5(
                user.to_owned(),
                password.to_owned(),
            ))
        }
        Some(credentials) => connector.with_auth("digest", credentials.as_bytes()),
    }
}

/// The `[zookeeper]` keys declaring `zk`'s timing (a standalone server has no followers:
/// `syncLimit` 0), so that a deadman's takeover wait is the one this ensemble needs.
pub fn zookeeper_ensemble_keys(zk: &ZkCluster) -> String {
    let sync_limit = if zk.size() == 1 { 0 } else { zk.sync_limit() };
    format!(
        "ensemble_tick_ms = {}\nensemble_sync_limit = {sync_limit}\n",
        crate::zookeeper::tick_ms()
    )
}

/// The `[zookeeper]` TLS keys for a TLS-only test server (empty for a plain one).
pub fn zookeeper_tls_keys(zk: &ZkCluster) -> String {
    zk.client_tls().map_or_else(String::new, |files| {
        format!(
            "tls_ca_file = \"{}\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
            files.ca.display(),
            files.cert.display(),
            files.key.display()
        )
    })
}
