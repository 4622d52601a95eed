//! The `[zookeeper]` section every zgres program reads, and the settings it validates into.

use std::time::Duration;

use serde::Deserialize;
use zgres_config::Problems;
use zgres_schema::ZkLayout;
use zookeeper_client as zk;

use crate::auth::DigestAuth;
use crate::tls::ZkTls;

pub mod fencing;

/// Session timeouts accepted, in milliseconds (ZooKeeper's own defaults allow 2–20 ticks).
const SESSION_TIMEOUT_RANGE_MS: std::ops::RangeInclusive<u64> = 1_000..=120_000;

/// The `[zookeeper]` section as written in a config file. Unknown keys are rejected.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZookeeperSection {
    /// `host:port,...` of the ensemble, optionally followed by a `/chroot`.
    pub connect: String,
    /// The znode under which zgres keeps everything.
    #[serde(default = "default_root")]
    pub root: String,
    /// The session timeout to ask for; each program has its own default.
    pub session_timeout_ms: Option<u64>,
    /// How long before the earliest possible session expiry PostgreSQL is fenced. Only the
    /// deadman fences; other programs reject the key.
    pub fence_margin_ms: Option<u64>,
    /// The ensemble's `tickTime` in milliseconds (zoo.cfg), for the deadman's takeover wait
    /// ([`fencing`]); other programs reject the key.
    pub ensemble_tick_ms: Option<u64>,
    /// The ensemble's `syncLimit` in ticks (zoo.cfg), 0 for a standalone server; as
    /// `ensemble_tick_ms`.
    pub ensemble_sync_limit: Option<u32>,
    /// The user to authenticate as (with `password_file` or `password_env`).
    pub user: Option<String>,
    /// Authenticate `user` with SASL DIGEST-MD5 (identity `sasl:USER`, the password never
    /// sent) rather than the digest scheme (identity `digest:USER:HASH`).
    #[serde(default)]
    pub sasl: bool,
    /// A file whose first line is the digest password.
    pub password_file: Option<std::path::PathBuf>,
    /// An environment variable holding the digest password.
    pub password_env: Option<String>,
    /// ACL ids (`digest:USER:HASH`) granted read access to every znode created.
    #[serde(default)]
    pub readers: Vec<String>,
    /// PEM file of the CA(s) that signed the servers' certificates. Set: every connection
    /// uses TLS (the servers' `secureClientPort`), and each server's certificate must name
    /// the host it is reached by.
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// This client's certificate (PEM), presented to the servers; with `tls_key_file`.
    pub tls_cert_file: Option<std::path::PathBuf>,
    /// The private key of `tls_cert_file` (PEM).
    pub tls_key_file: Option<std::path::PathBuf>,
}

fn default_root() -> String {
    ZkLayout::DEFAULT_ROOT.to_owned()
}

/// Validated ZooKeeper settings: where to connect and where zgres's znodes live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkSettings {
    /// `host:port,...` of the ensemble.
    pub connect: String,
    /// Where zgres's znodes live.
    pub layout: ZkLayout,
    /// The session timeout to ask for (the server may grant another).
    pub session_timeout: Duration,
    /// Who to authenticate as; `None`: no authentication, znodes open to anyone.
    pub auth: Option<DigestAuth>,
    /// ACL ids (scheme, id) granted read access to the znodes created.
    pub readers: Vec<(String, String)>,
    /// TLS to the servers; `None`: plain TCP.
    pub tls: Option<ZkTls>,
}

impl ZookeeperSection {
    /// Validates the keys every program shares, adding each problem under its key (e.g.
    /// `zookeeper.connect`). `default_session_timeout` applies when the key is absent.
    /// `None` when any key is bad.
    pub fn settings(
        &self,
        default_session_timeout: Duration,
        problems: &mut Problems,
    ) -> Option<ZkSettings> {
        let before = problems.len();
        let layout = ZkLayout::new(&self.root)
            .map_err(|e| problems.add("zookeeper.root", e.to_string()))
            .ok();
        if let Err(reason) = check_connect_string(&self.connect) {
            problems.add("zookeeper.connect", reason.to_string());
        }
        let session_timeout = match self.session_timeout_ms {
            Some(ms) if !SESSION_TIMEOUT_RANGE_MS.contains(&ms) => {
                problems.add(
                    "zookeeper.session_timeout_ms",
                    "must be between 1000 and 120000",
                );
                default_session_timeout
            }
            Some(ms) => Duration::from_millis(ms),
            None => default_session_timeout,
        };
        let auth = self.auth(problems);
        let tls = self.tls(problems);
        let certified = tls.as_ref().is_some_and(ZkTls::has_identity);
        let readers = self.readers(auth.is_some() || certified, problems);
        (problems.len() == before).then(|| ZkSettings {
            connect: self.connect.trim().to_owned(),
            layout: layout.expect("a valid root when no problem was added"),
            session_timeout,
            auth,
            readers,
            tls,
        })
    }

    /// The TLS files, read and checked now: a CA turns TLS on; a client certificate and key
    /// (both or neither) need it.
    fn tls(&self, problems: &mut Problems) -> Option<ZkTls> {
        let identity = match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
            (None, None) => None,
            (Some(_), None) => {
                problems.add("zookeeper.tls_key_file", "tls_cert_file needs its key file");
                return None;
            }
            (None, Some(_)) => {
                problems.add(
                    "zookeeper.tls_cert_file",
                    "tls_key_file needs its certificate file",
                );
                return None;
            }
        };
        let Some(ca_file) = &self.tls_ca_file else {
            if identity.is_some() {
                problems.add(
                    "zookeeper.tls_ca_file",
                    "a client certificate is set: name the CA that signed the servers' certificates",
                );
            }
            return None;
        };
        ZkTls::load(ca_file, identity)
            .map_err(|e| problems.add(&format!("zookeeper.{}", e.key), e.to_string()))
            .ok()
    }

    /// The digest identity, when `user` and a password are set (both or neither).
    fn auth(&self, problems: &mut Problems) -> Option<DigestAuth> {
        if self.sasl && self.user.is_none() {
            problems.add("zookeeper.sasl", "needs zookeeper.user and a password");
        }
        let password = zgres_config::secret(
            "zookeeper",
            self.password_file.as_deref(),
            self.password_env.as_deref(),
            |var| std::env::var(var).ok(),
            problems,
        );
        match (&self.user, password) {
            (Some(user), _) if user.is_empty() || user.contains(':') => {
                problems.add("zookeeper.user", "must be non-empty and hold no ':'");
                None
            }
            (Some(user), Some(password)) => Some(DigestAuth {
                user: user.clone(),
                password,
                mechanism: if self.sasl {
                    crate::auth::Mechanism::SaslDigestMd5
                } else {
                    crate::auth::Mechanism::Digest
                },
            }),
            (Some(_), None) if self.password_file.is_none() && self.password_env.is_none() => {
                problems.add(
                    "zookeeper.user",
                    "needs zookeeper.password_file or zookeeper.password_env",
                );
                None
            }
            (None, Some(_)) => {
                problems.add(
                    "zookeeper.user",
                    "a password is set but no user to authenticate as",
                );
                None
            }
            _ => None,
        }
    }

    /// `readers` as ACL ids; they only mean something with authentication.
    fn readers(&self, authenticated: bool, problems: &mut Problems) -> Vec<(String, String)> {
        if !self.readers.is_empty() && !authenticated {
            problems.add(
                "zookeeper.readers",
                "only applies with authentication (zookeeper.user and a password, or a TLS client certificate)",
            );
        }
        self.readers
            .iter()
            .filter_map(|text| {
                let id = crate::auth::parse_acl_id(text);
                if id.is_none() {
                    problems.add(
                        "zookeeper.readers",
                        format!("{text:?} is not an ACL id such as digest:USER:HASH"),
                    );
                }
                id
            })
            .collect()
    }
}

impl ZkSettings {
    /// Settings from command-line values (zgresctl): the same checks as the config section.
    ///
    /// # Errors
    /// Each problem, under the config key it corresponds to.
    pub fn from_values(
        connect: &str,
        root: &str,
        session_timeout: Duration,
    ) -> Result<ZkSettings, Problems> {
        let section = ZookeeperSection {
            connect: connect.to_owned(),
            root: root.to_owned(),
            session_timeout_ms: None,
            fence_margin_ms: None,
            ensemble_tick_ms: None,
            ensemble_sync_limit: None,
            user: None,
            password_file: None,
            password_env: None,
            sasl: false,
            readers: Vec::new(),
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
        };
        let mut problems = Problems::default();
        section
            .settings(session_timeout, &mut problems)
            .ok_or(problems)
    }

    /// The connector every session of every program is opened with. Authentication and TLS
    /// belong here, so that no program connects differently.
    ///
    /// # Errors
    /// When the client refuses the TLS files (checked already when the settings were made).
    pub(crate) fn connector(&self) -> Result<zk::Connector, zk::Error> {
        let mut connector = zk::Client::connector().with_session_timeout(self.session_timeout);
        if let Some(auth) = &self.auth {
            connector = auth.authenticate(connector);
        }
        if let Some(tls) = &self.tls {
            connector = connector.with_tls(tls.options()?);
        }
        Ok(connector)
    }

    /// Uses TLS with `tls` from now on (zgresctl's options).
    pub fn with_tls(mut self, tls: Option<ZkTls>) -> Self {
        self.tls = tls;
        self
    }

    /// Authenticates as `auth` from now on (zgresctl's options).
    pub fn with_auth(mut self, auth: Option<DigestAuth>) -> Self {
        self.auth = auth;
        self
    }

    /// Grants `readers` (ACL ids) read access to what this identity creates.
    ///
    /// # Errors
    /// [`BadAclId`] for the first entry that is not `scheme:id`.
    pub fn with_readers(mut self, readers: &[String]) -> Result<Self, BadAclId> {
        self.readers = readers
            .iter()
            .map(|r| crate::auth::parse_acl_id(r).ok_or_else(|| BadAclId(r.clone())))
            .collect::<Result<_, _>>()?;
        Ok(self)
    }

    /// Whether sessions authenticate: as the digest user, or with a TLS client certificate
    /// (ZooKeeper's x509 provider). The ACL policy applies only then.
    pub fn authenticated(&self) -> bool {
        self.auth.is_some() || self.tls.as_ref().is_some_and(ZkTls::has_identity)
    }

    /// What to tell an operator about authentication: `None` when it is on.
    pub fn auth_warning(&self) -> Option<&'static str> {
        (!self.authenticated()).then_some(
            "no ZooKeeper authentication (zookeeper.user or tls_cert_file): anyone who can reach ZooKeeper can change or stop this group",
        )
    }
}

/// A reader that is not an ACL id.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an ACL id such as digest:USER:HASH")]
pub struct BadAclId(pub String);

/// What is wrong with a connect string.
#[derive(Debug, thiserror::Error)]
enum ConnectStringError {
    #[error("must list at least one host:port")]
    Empty,
    #[error("{0:?} has no :port")]
    NoPort(String),
    #[error("{0:?} is not host:port")]
    NotHostPort(String),
}

/// Checks `host:port,...[/chroot]`: at least one host, each with a numeric port.
fn check_connect_string(connect: &str) -> Result<(), ConnectStringError> {
    let hosts = connect.trim().split('/').next().unwrap_or_default();
    if hosts.is_empty() {
        return Err(ConnectStringError::Empty);
    }
    for host in hosts.split(',') {
        let host = host.trim();
        let Some((name, port)) = host.rsplit_once(':') else {
            return Err(ConnectStringError::NoPort(host.to_owned()));
        };
        if name.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(ConnectStringError::NotHostPort(host.to_owned()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> ZookeeperSection {
        toml::from_str(text).unwrap()
    }

    fn problems_of(text: &str) -> Vec<String> {
        let mut problems = Problems::default();
        section(text).settings(Duration::from_secs(4), &mut problems);
        problems.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn defaults_apply_and_the_connect_string_is_kept() {
        let mut problems = Problems::default();
        let settings = section("connect = \"a:2181,b:2181/chroot\"")
            .settings(Duration::from_secs(4), &mut problems)
            .unwrap();
        assert!(problems.is_empty());
        assert_eq!(settings.connect, "a:2181,b:2181/chroot");
        assert_eq!(settings.session_timeout, Duration::from_secs(4));
        assert_eq!(settings.layout.root(), ZkLayout::DEFAULT_ROOT);
    }

    #[test]
    fn each_bad_key_is_named() {
        assert_eq!(
            problems_of("connect = \"\""),
            ["zookeeper.connect: must list at least one host:port"]
        );
        assert_eq!(
            problems_of("connect = \"a:2181,b\""),
            ["zookeeper.connect: \"b\" has no :port"]
        );
        assert_eq!(
            problems_of("connect = \"a:zk\""),
            ["zookeeper.connect: \"a:zk\" is not host:port"]
        );
        assert_eq!(
            problems_of("connect = \"a:1\"\nsession_timeout_ms = 10"),
            ["zookeeper.session_timeout_ms: must be between 1000 and 120000"]
        );
        let root = problems_of("connect = \"a:1\"\nroot = \"no-slash\"");
        assert!(root[0].starts_with("zookeeper.root: "), "{root:?}");
    }

    #[test]
    fn authentication_keys_go_together_and_are_checked() {
        assert_eq!(
            problems_of("connect = \"a:1\"\nuser = \"zgres\""),
            ["zookeeper.user: needs zookeeper.password_file or zookeeper.password_env"]
        );
        assert_eq!(
            problems_of("connect = \"a:1\"\nuser = \"a:b\"\npassword_env = \"PATH\""),
            ["zookeeper.user: must be non-empty and hold no ':'"]
        );
        assert_eq!(
            problems_of("connect = \"a:1\"\nsasl = true"),
            ["zookeeper.sasl: needs zookeeper.user and a password"]
        );
        assert_eq!(
            problems_of("connect = \"a:1\"\npassword_env = \"PATH\""),
            ["zookeeper.user: a password is set but no user to authenticate as"]
        );
        assert_eq!(
            problems_of("connect = \"a:1\"\nreaders = [\"digest:x:y\"]"),
            ["zookeeper.readers: only applies with authentication (zookeeper.user and a password, or a TLS client certificate)"]
        );
        assert_eq!(
            problems_of(
                "connect = \"a:1\"\nuser = \"zgres\"\npassword_env = \"PATH\"\nreaders = [\"nope\"]"
            ),
            ["zookeeper.readers: \"nope\" is not an ACL id such as digest:USER:HASH"]
        );
        let mut problems = Problems::default();
        let settings = section("connect = \"a:1\"\nuser = \"zgres\"\npassword_env = \"PATH\"")
            .settings(Duration::from_secs(4), &mut problems)
            .unwrap();
        assert!(settings.auth_warning().is_none());
        assert!(
            format!("{settings:?}").contains("Secret(***)"),
            "the password is never shown"
        );
        let open = section("connect = \"a:1\"")
            .settings(Duration::from_secs(4), &mut problems)
            .unwrap();
        assert!(open.auth_warning().is_some());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml::from_str::<ZookeeperSection>("connect = \"a:1\"\nhosts = 1").unwrap_err();
        assert!(err.to_string().contains("unknown field `hosts`"), "{err}");
    }
}
