//! Who a zgres program is to ZooKeeper, and the ACL every znode it creates gets.
//!
//! The policy, with `[zookeeper] user` and a password set (digest authentication) or a TLS
//! client certificate (ZooKeeper's x509 provider authenticates its subject, `x509:CN=...`):
//! - full rights for the identity that created the znode (ZooKeeper's `auth` scheme: the
//!   session's authenticated identities). Deadmen and zgresctl share one writer identity, so
//!   each can change what another created;
//! - read-only for each identity listed in `readers` (zgres-sync, monitoring), written as
//!   ZooKeeper ACL ids (`digest:USER:HASH`, see [`digest_id`], or `x509:SUBJECT`);
//! - nothing for anyone else.
//!
//! Without authentication every znode is open to anyone (`world:anyone`), and the daemons warn.

use base64::Engine;
use sha1::{Digest, Sha1};
use zgres_config::Secret;
use zookeeper_client as zk;

/// How a user and password authenticate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mechanism {
    /// ZooKeeper's `digest` scheme: the password travels in the auth packet (use TLS).
    #[default]
    Digest,
    /// SASL DIGEST-MD5: a challenge and response, the password never sent. The identity is
    /// `sasl:USER`; the server needs its SASL provider and a JAAS entry for the user.
    SaslDigestMd5,
}

/// A user-and-password identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestAuth {
    /// The user.
    pub user: String,
    /// Its password.
    pub password: Secret,
    /// How they authenticate.
    pub mechanism: Mechanism,
}

impl DigestAuth {
    /// The bytes ZooKeeper's digest scheme expects: `user:password`.
    pub(crate) fn credentials(&self) -> Vec<u8> {
        format!("{}:{}", self.user, self.password.expose()).into_bytes()
    }

    /// Adds this identity to `connector`.
    pub(crate) fn authenticate(&self, connector: zk::Connector) -> zk::Connector {
        match self.mechanism {
            Mechanism::Digest => connector.with_auth("digest", &self.credentials()),
            Mechanism::SaslDigestMd5 => connector.with_sasl(zk::SaslOptions::digest_md5(
                self.user.clone(),
                self.password.expose().to_owned(),
            )),
        }
    }
}

/// The ZooKeeper ACL id of a digest identity: `digest:USER:base64(sha1(USER:PASSWORD))`, what
/// `readers` lists and what ZooKeeper's `getAcl` shows.
pub fn digest_id(user: &str, password: &str) -> String {
    format!("digest:{}", digest_user_id(user, password))
}

/// The id part of [`digest_id`]: `USER:base64(sha1(USER:PASSWORD))`.
fn digest_user_id(user: &str, password: &str) -> String {
    let hash = Sha1::digest(format!("{user}:{password}").as_bytes());
    format!(
        "{user}:{}",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}

/// A `scheme:id` ACL id from `readers`, split; `None` when it has no scheme or no id.
pub(crate) fn parse_acl_id(text: &str) -> Option<(String, String)> {
    let (scheme, id) = text.split_once(':')?;
    let plain = |s: &str| !s.is_empty() && !s.chars().any(char::is_whitespace);
    (plain(scheme) && plain(id)).then(|| (scheme.to_owned(), id.to_owned()))
}

/// The ACL for every znode created by an `authenticated` session (open to anyone for a
/// session that is not), granting `readers` read access.
pub(crate) fn policy(authenticated: bool, readers: &[(String, String)]) -> Vec<zk::Acl> {
    if authenticated {
        with_readers(zk::Acls::creator_all().to_vec(), readers)
    } else {
        zk::Acls::anyone_all().to_vec()
    }
}

/// `acls` followed by read access for each of `readers`.
fn with_readers(mut acls: Vec<zk::Acl>, readers: &[(String, String)]) -> Vec<zk::Acl> {
    acls.extend(
        readers
            .iter()
            .map(|(scheme, id)| zk::Acl::new(zk::Permission::READ, zk::AuthId::new(scheme, id))),
    );
    acls
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_ids_match_zookeepers_digest_authentication_provider() {
        // DigestAuthenticationProvider.generateDigest("super:test") in ZooKeeper's docs.
        assert_eq!(
            digest_id("super", "test"),
            "digest:super:D/InIHSb7yEEbrWz8b9l71RjZJU="
        );
    }

    #[test]
    fn acl_ids_need_a_scheme_and_an_id() {
        assert_eq!(
            parse_acl_id("digest:sync:abc="),
            Some(("digest".into(), "sync:abc=".into()))
        );
        for bad in ["digest", ":x", "digest:", "digest:a b"] {
            assert_eq!(parse_acl_id(bad), None, "{bad}");
        }
    }
}
