//! A ZooKeeper session whose requests are timed and whose expected answers are typed.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use zookeeper_client as zk;

use crate::error::{ConnectError, ConnectFailure, ZkError};
use crate::settings::ZkSettings;

mod transactions;

/// The answer to a write that may meet an expected condition instead of succeeding. None of
/// these is an error to retry: the caller decides what each means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<T> {
    /// The write happened.
    Done(T),
    /// The znode (or, for a create, its parent) does not exist.
    NotFound,
    /// A create found the znode already there.
    Exists,
    /// The znode's version is not the one given: it changed since it was read.
    BadVersion,
}

impl<T> Outcome<T> {
    /// The result, if the write happened.
    pub fn done(self) -> Option<T> {
        match self {
            Outcome::Done(value) => Some(value),
            _ => None,
        }
    }

    /// Whether the write happened.
    pub fn is_done(&self) -> bool {
        matches!(self, Outcome::Done(_))
    }

    /// The same outcome, with `f` applied to the result of a write that happened.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U> {
        match self {
            Outcome::Done(value) => Outcome::Done(f(value)),
            Outcome::NotFound => Outcome::NotFound,
            Outcome::Exists => Outcome::Exists,
            Outcome::BadVersion => Outcome::BadVersion,
        }
    }
}

/// What kind of znode a create makes. The ACL each gets is decided here, in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateKind {
    /// Outlives the session.
    Persistent,
    /// Deleted by the server when the session ends.
    Ephemeral,
    /// Persistent, with a sequence number the server appends to the name.
    PersistentSequential,
}

impl CreateKind {
    /// The create options with the session's ACL policy (see [`crate::auth`]).
    fn options(self, acls: &[zk::Acl]) -> zk::CreateOptions<'_> {
        let mode = match self {
            CreateKind::Persistent => zk::CreateMode::Persistent,
            CreateKind::Ephemeral => zk::CreateMode::Ephemeral,
            CreateKind::PersistentSequential => zk::CreateMode::PersistentSequential,
        };
        mode.with_acls(zk::Acls::new(acls))
    }
}

/// One ZooKeeper session. Every request is bounded by the request timeout given at connect;
/// a request that times out is [`ZkError::Retryable`] and the session stays usable.
///
/// Cancellation: every method is cancel-safe in the sense that dropping its future abandons
/// the wait; a write already sent may still be applied by the server.
#[derive(Clone)]
pub struct ZkSession {
    client: zk::Client,
    request_timeout: Duration,
    /// The ACL every znode this session creates gets.
    acls: Arc<[zk::Acl]>,
    /// Told the send time of every answer, a ping's or a request's: calls the caller's
    /// observer, if any (see [`ZkSession::connect_observing_answers`]), and wakes `answers`.
    on_answer: zk::PingObserver,
    /// Woken by every answer (see [`ZkSession::answered`]).
    answers: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for ZkSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZkSession")
            .field("session", &self.client.session_id())
            .finish()
    }
}

impl ZkSession {
    /// Opens a session with `settings` — or resumes `resume`, a session the client gave up on
    /// that the server may still hold — waiting at most the session timeout.
    ///
    /// # Errors
    /// [`ConnectError`]: no answer in time, the session to resume expired, or the client
    /// rejected the attempt.
    pub async fn connect(
        settings: &ZkSettings,
        resume: Option<zk::SessionInfo>,
        request_timeout: Duration,
    ) -> Result<ZkSession, ConnectError> {
        Self::open(settings, resume, request_timeout, None).await
    }

    /// As [`ZkSession::connect`], and `on_answer` is called with the send time of every
    /// keep-alive ping and every request the server answers (a ping's from the client's own
    /// task, a request's from the task awaiting it; it must not block). Each such answer
    /// proves the server heard from the session after that time, which is what a fencing
    /// deadline needs, without a request of its own. A request's time is taken before it is
    /// queued, so it is never later than its real send; errors other than the expected
    /// outcomes (no node, node exists, bad version) are not counted. Caveat: a follower cut
    /// from its leader answers pings and reads too, until it notices (`syncLimit` ticks),
    /// while the leader expires the session: a known gap, docs/deadman.md, "Fencing".
    ///
    /// # Errors
    /// As [`ZkSession::connect`].
    pub async fn connect_observing_answers(
        settings: &ZkSettings,
        resume: Option<zk::SessionInfo>,
        request_timeout: Duration,
        on_answer: zk::PingObserver,
    ) -> Result<ZkSession, ConnectError> {
        Self::open(settings, resume, request_timeout, Some(on_answer)).await
    }

    async fn open(
        settings: &ZkSettings,
        resume: Option<zk::SessionInfo>,
        request_timeout: Duration,
        on_answer: Option<zk::PingObserver>,
    ) -> Result<ZkSession, ConnectError> {
        let failed = |failure| ConnectError {
            connect: settings.connect.clone(),
            failure,
        };
        let resuming = resume.is_some();
        let mut connector = settings
            .connector()
            .map_err(|e| failed(ConnectFailure::Client(e)))?;
        if let Some(session) = resume {
            connector = connector.with_session(session);
        }
        let answers = Arc::new(tokio::sync::Notify::new());
        let on_answer: zk::PingObserver = {
            let answers = answers.clone();
            Arc::new(move |sent| {
                if let Some(on_answer) = &on_answer {
                    on_answer(sent);
                }
                answers.notify_waiters();
            })
        };
        connector = connector.with_ping_observer(on_answer.clone());
        // With TLS every server of the connect string is reached over it.
        let connecting = async {
            if settings.tls.is_some() {
                connector.secure_connect(&settings.connect).await
            } else {
                connector.connect(&settings.connect).await
            }
        };
        let failure = match tokio::time::timeout(settings.session_timeout, connecting).await {
            Ok(Ok(client)) => {
                return Ok(ZkSession {
                    client,
                    request_timeout,
                    acls: crate::auth::policy(settings.authenticated(), &settings.readers).into(),
                    on_answer,
                    answers,
                })
            }
            Ok(Err(zk::Error::SessionExpired)) if resuming => {
                return Err(failed(ConnectFailure::ResumedSessionExpired))
            }
            Ok(Err(e)) => ConnectFailure::Client(e),
            Err(_) => ConnectFailure::TimedOut(settings.session_timeout),
        };
        // The client only logs a failed handshake at debug level: repeat it to say why.
        if let Some(tls) = &settings.tls {
            if let Some(e) = crate::tls::diagnose(tls, &settings.connect).await {
                return Err(failed(ConnectFailure::Tls(e)));
            }
        }
        Err(failed(failure))
    }

    /// The underlying client (for requests this type does not wrap).
    pub fn client(&self) -> &zk::Client {
        &self.client
    }

    /// The session's id.
    pub fn session_id(&self) -> zk::SessionId {
        self.client.session_id()
    }

    /// The session's id and password, to resume it after the client gave up on it.
    pub fn session_info(&self) -> zk::SessionInfo {
        self.client.session().clone()
    }

    /// Whether the client is connected to a server right now (as far as it has noticed: a
    /// silent network is only noticed when its pings go unanswered).
    ///
    /// # Errors
    /// [`ZkError::SessionEnded`] when the session expired or was closed;
    /// [`ZkError::Retryable`] while the client is disconnected.
    pub fn check_connected(&self) -> Result<(), ZkError> {
        match self.client.state() {
            zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => Ok(()),
            zk::SessionState::Disconnected => Err(ZkError::Retryable(zk::Error::ConnectionLoss)),
            _ => Err(ZkError::SessionEnded),
        }
    }

    /// The session timeout the server granted.
    pub fn granted_timeout(&self) -> Duration {
        self.client.session_timeout()
    }

    /// The longest this session stays silent while idle: the client's keep-alive ping
    /// interval at the granted timeout ([`crate::settings::fencing::idle_ping_gap`]).
    pub fn idle_ping_gap(&self) -> Duration {
        crate::settings::fencing::idle_ping_gap(self.granted_timeout())
    }

    /// Resolves at the first answer from the server (to a keep-alive ping or to any request)
    /// at or after `from`. An idle session is answered once per [`ZkSession::idle_ping_gap`],
    /// and the process is awake for that answer anyway: periodic work run then costs no
    /// wake-up of its own. Answers before `from` are waited past. Never resolves while no
    /// answer comes (disconnected, or the session ended): pair it with a timer. Cancel-safe.
    pub async fn answered(&self, from: Instant) {
        loop {
            self.answers.notified().await;
            if Instant::now() >= from {
                return;
            }
        }
    }

    /// Sends the request `send` queues, with the request timeout; expected answers become
    /// [`Outcome`]s, and each is reported to the answer observer with the time taken just
    /// before `send` ran (the client queues a request when it is called, not when awaited).
    async fn timed<T, F>(
        &self,
        operation: &'static str,
        path: &str,
        send: impl FnOnce() -> F,
    ) -> Result<Outcome<T>, ZkError>
    where
        F: Future<Output = Result<T, zk::Error>>,
    {
        let sent = Instant::now();
        let outcome = match tokio::time::timeout(self.request_timeout, send()).await {
            Ok(Ok(value)) => Outcome::Done(value),
            Ok(Err(zk::Error::NoNode)) => Outcome::NotFound,
            Ok(Err(zk::Error::NodeExists)) => Outcome::Exists,
            Ok(Err(zk::Error::BadVersion)) => Outcome::BadVersion,
            Ok(Err(e)) => return Err(ZkError::classify(e, operation, path)),
            Err(_) => return Err(ZkError::Retryable(zk::Error::Timeout)),
        };
        (self.on_answer)(sent);
        Ok(outcome)
    }

    /// The znode's data and stat; `None` when it does not exist.
    ///
    /// # Errors
    /// [`ZkError`].
    pub async fn get(&self, path: &str) -> Result<Option<(Vec<u8>, zk::Stat)>, ZkError> {
        Ok(self
            .timed("get", path, || self.client.get_data(path))
            .await?
            .done())
    }

    /// The znode's children (unordered); `None` when it does not exist.
    ///
    /// # Errors
    /// [`ZkError`].
    pub async fn children(&self, path: &str) -> Result<Option<Vec<String>>, ZkError> {
        Ok(self
            .timed("list", path, || self.client.list_children(path))
            .await?
            .done())
    }

    /// The znode's stat; `None` when it does not exist.
    ///
    /// # Errors
    /// [`ZkError`].
    pub async fn stat(&self, path: &str) -> Result<Option<zk::Stat>, ZkError> {
        Ok(self
            .timed("stat", path, || self.client.check_stat(path))
            .await?
            .done()
            .flatten())
    }

    /// Creates the znode; [`Outcome::Done`] carries its stat and sequence number.
    ///
    /// # Errors
    /// [`ZkError`].
    pub async fn create(
        &self,
        path: &str,
        data: &[u8],
        kind: CreateKind,
    ) -> Result<Outcome<(zk::Stat, zk::CreateSequence)>, ZkError> {
        let options = kind.options(&self.acls);
        self.timed("create", path, || self.client.create(path, data, &options))
            .await
    }

    /// Replaces the znode's data if its version is `version` (`None`: any version).
    ///
    /// # Errors
    /// [`ZkError`].
    pub async fn set(
        &self,
        path: &str,
        data: &[u8],
        version: Option<i32>,
    ) -> Result<Outcome<zk::Stat>, ZkError> {
        self.timed("set", path, || self.client.set_data(path, data, version))
            .await
    }

    /// Deletes the znode if its version is `version` (`None`: any version).
    ///
    /// # Errors
    /// [`ZkError`].
    pub async fn delete(&self, path: &str, version: Option<i32>) -> Result<Outcome<()>, ZkError> {
        self.timed("delete", path, || self.client.delete(path, version))
            .await
    }

    /// This session's ACL policy as the server stores it, with the creator resolved to the
    /// session's identities (`digest:USER:HASH`, `sasl:USER`, `x509:SUBJECT`): learned by
    /// creating an ephemeral znode under `parent` with the policy and reading its ACL back
    /// (then deleting it), so it holds for every mechanism.
    ///
    /// # Errors
    /// [`ZkError`]; refused when `parent` does not let this identity create.
    pub async fn stored_policy(&self, parent: &str) -> Result<Vec<zk::Acl>, ZkError> {
        let probe = format!(
            "{}/.acl-probe-{:x}",
            parent.trim_end_matches('/'),
            self.session_id().0
        );
        self.create(&probe, b"", CreateKind::Ephemeral).await?;
        let read = self
            .timed("getAcl", &probe, || self.client.get_acl(&probe))
            .await;
        self.delete(&probe, None).await?;
        match read? {
            Outcome::Done((acl, _)) => Ok(acl),
            _ => Err(ZkError::Retryable(zk::Error::NoNode)),
        }
    }

    /// Puts this session's ACL policy ([`crate::auth`]) on the existing znode `path` unless it
    /// already carries `stored` (the policy as the server stores it, [`ZkSession::stored_policy`]).
    /// [`Outcome::Done`] says whether it changed; an ACL changed meanwhile is
    /// [`Outcome::BadVersion`].
    ///
    /// # Errors
    /// [`ZkError`] (refused when this identity may not administer the znode).
    pub async fn apply_acl(
        &self,
        path: &str,
        stored: &[zk::Acl],
    ) -> Result<Outcome<bool>, ZkError> {
        let Some((current, stat)) = self
            .timed("getAcl", path, || self.client.get_acl(path))
            .await?
            .done()
        else {
            return Ok(Outcome::NotFound);
        };
        let same = current.len() == stored.len() && current.iter().all(|acl| stored.contains(acl));
        if same {
            return Ok(Outcome::Done(false));
        }
        let set = self
            .timed("setAcl", path, || {
                self.client.set_acl(path, &self.acls, Some(stat.aversion))
            })
            .await?;
        Ok(set.map(|_| true))
    }

    /// The znode's ACL; `None` when it does not exist.
    ///
    /// # Errors
    /// [`ZkError`].
    pub async fn acl(&self, path: &str) -> Result<Option<Vec<zk::Acl>>, ZkError> {
        Ok(self
            .timed("getAcl", path, || self.client.get_acl(path))
            .await?
            .done()
            .map(|(acls, _)| acls))
    }

    /// Creates the persistent znode `path` and any missing parents (existing ones are fine).
    ///
    /// # Errors
    /// [`ZkError`].
    pub async fn mkdir(&self, path: &str) -> Result<(), ZkError> {
        let options = CreateKind::Persistent.options(&self.acls);
        match self
            .timed("mkdir", path, || self.client.mkdir(path, &options))
            .await?
        {
            Outcome::Done(()) | Outcome::Exists => Ok(()),
            // A parent deleted concurrently, or a version race on it: retry.
            Outcome::NotFound | Outcome::BadVersion => Err(ZkError::Retryable(zk::Error::NoNode)),
        }
    }

    /// Adds a persistent watch (`mode`: on the znode alone, or recursive) on `path`.
    ///
    /// # Errors
    /// [`ZkError`].
    pub async fn watch(
        &self,
        path: &str,
        mode: zk::AddWatchMode,
    ) -> Result<zk::PersistentWatcher, ZkError> {
        // A persistent watch may be set on a path that does not exist yet.
        match self
            .timed("watch", path, || self.client.watch(path, mode))
            .await?
        {
            Outcome::Done(watcher) => Ok(watcher),
            _ => Err(ZkError::Retryable(zk::Error::NoNode)),
        }
    }
}
