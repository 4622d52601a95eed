//! A model of one ZooKeeper ensemble as zgres uses it: sessions that the server expires on its
//! own clock, the group's ephemeral lock, the nodes' states with a global write order (zxid),
//! and the promotion history.

use zgres_schema::documents::{NodeState, Switchover, SyncState};
use zgres_schema::{Lsn, NodeId, Timeline};

/// A session id.
pub type SessionId = u64;

/// The owner of a lock left persistent at a paused shutdown: no session (ids start at 1).
pub const PERSISTENT: SessionId = 0;

/// One session.
#[derive(Debug, Clone)]
struct Session {
    id: SessionId,
    /// Server time (ms) a request of it was last received.
    last_heard: u64,
    alive: bool,
}

/// The lock znode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockZnode {
    /// The owner session.
    pub session: SessionId,
    /// The node named in it.
    pub node: NodeId,
    /// The zxid that created it (`czxid`): which lock it is.
    pub czxid: u64,
}

/// The server's sessions, expired on its own clock.
#[derive(Debug, Clone)]
struct SessionTable {
    timeout_ms: u64,
    sessions: Vec<Session>,
    next_id: SessionId,
}

impl SessionTable {
    /// Marks every session not heard from within the timeout before `now` expired; returns
    /// those it expired.
    fn expire(&mut self, now: u64) -> Vec<SessionId> {
        let mut expired = Vec::new();
        for s in &mut self.sessions {
            if s.alive && now > s.last_heard + self.timeout_ms {
                s.alive = false;
                expired.push(s.id);
            }
        }
        expired
    }

    fn find(&mut self, id: SessionId) -> Option<&mut Session> {
        self.sessions.iter_mut().find(|s| s.id == id)
    }
}

/// `/lock/{GROUP}` and what ZooKeeper shows of its history.
#[derive(Debug, Clone, Default)]
pub struct LockDir {
    /// The lock, if held.
    pub held: Option<LockZnode>,
    /// The zxid of the lock's last deletion.
    pub gone_zxid: Option<u64>,
    /// A lock change notified to watchers: bumped on every lock change.
    pub version: u64,
    /// `/released/{GROUP}`: the creation zxid of the last lock released quietly, and the zxid
    /// of that release (the record's `mzxid`).
    pub released: Option<(u64, u64)>,
}

/// The server.
#[derive(Debug, Clone)]
pub struct ZooKeeper {
    sessions: SessionTable,
    /// Global write order.
    zxid: u64,
    /// The lock.
    pub lock: LockDir,
    /// Each node's published state and the zxid it was written at.
    pub states: Vec<Option<(NodeState, u64)>>,
    /// `/history`: promotions as (timeline, position, node), in the order recorded.
    pub history: Vec<(Timeline, Lsn, NodeId)>,
    /// `/sync/{GROUP}`.
    pub sync: Option<SyncState>,
    /// `/switchover/{GROUP}`: an operator's request.
    pub switchover: Option<Switchover>,
    /// `/config/{GROUP}`'s `paused`.
    pub paused: bool,
}

impl ZooKeeper {
    /// A server for `nodes` nodes.
    pub fn new(nodes: usize, session_timeout_ms: u64) -> Self {
        ZooKeeper {
            sessions: SessionTable {
                timeout_ms: session_timeout_ms,
                sessions: Vec::new(),
                next_id: 1,
            },
            zxid: 0,
            lock: LockDir::default(),
            states: vec![None; nodes],
            history: Vec::new(),
            sync: None,
            switchover: None,
            paused: false,
        }
    }

    /// Expires every session not heard from within the timeout before `now`; an expired
    /// owner's lock goes with it.
    pub fn expire(&mut self, now: u64) {
        for id in self.sessions.expire(now) {
            if self.lock.held.is_some_and(|l| l.session == id) {
                self.lock.held = None;
                self.zxid += 1;
                self.lock.gone_zxid = Some(self.zxid);
                self.lock.version += 1;
            }
        }
    }

    /// Opens a session heard at `now`.
    pub fn open(&mut self, now: u64) -> SessionId {
        let id = self.sessions.next_id;
        self.sessions.next_id += 1;
        self.sessions.sessions.push(Session {
            id,
            last_heard: now,
            alive: true,
        });
        id
    }

    /// A request of `session` reached the server at `now`: whether the session is alive (it
    /// is then heard).
    pub fn heard(&mut self, session: SessionId, now: u64) -> bool {
        self.expire(now);
        match self.sessions.find(session) {
            Some(s) if s.alive => {
                s.last_heard = now;
                true
            }
            _ => false,
        }
    }

    /// Whether `session` had expired (on the leader's clock) before `at`: a member cut from the
    /// leader at `at` already applied its closing and answers its client no more.
    pub fn expired_before(&self, session: SessionId, at: u64) -> bool {
        let table = &self.sessions;
        table
            .sessions
            .iter()
            .find(|s| s.id == session)
            .map_or(true, |s| s.last_heard + table.timeout_ms < at)
    }

    /// The owner closed `session` (a clean stop): its lock is deleted at once.
    pub fn close(&mut self, session: SessionId) {
        if let Some(s) = self.sessions.find(session) {
            s.alive = false;
        }
        self.release(session, false);
    }

    /// Creates the lock for `node` if nobody holds it.
    pub fn acquire(&mut self, session: SessionId, node: NodeId) -> bool {
        if self.lock.held.is_some() {
            return false;
        }
        self.zxid += 1;
        self.lock.held = Some(LockZnode {
            session,
            node,
            czxid: self.zxid,
        });
        self.lock.version += 1;
        true
    }

    /// Deletes the lock if `session` holds it; `quiet`ly records it in `/released` in the
    /// same transaction.
    pub fn release(&mut self, session: SessionId, quiet: bool) {
        if let Some(lock) = self.lock.held.filter(|l| l.session == session) {
            self.lock.held = None;
            self.zxid += 1;
            if quiet {
                self.lock.released = Some((lock.czxid, self.zxid));
            }
            self.lock.gone_zxid = Some(self.zxid);
            self.lock.version += 1;
        }
    }

    /// Turns `session`'s lock into a persistent one with the same content (one transaction:
    /// never absent); whether it was `session`'s.
    pub fn leave_lock(&mut self, session: SessionId) -> bool {
        match &mut self.lock.held {
            Some(lock) if lock.session == session => {
                lock.session = PERSISTENT;
                self.zxid += 1;
                // A delete and a create in one transaction: a new znode.
                lock.czxid = self.zxid;
                self.lock.version += 1;
                true
            }
            _ => false,
        }
    }

    /// Takes a persistent lock naming `node` back into `session` (one transaction); whether
    /// there was one.
    pub fn reclaim_lock(&mut self, session: SessionId, node: NodeId) -> bool {
        match &mut self.lock.held {
            Some(lock) if lock.session == PERSISTENT && lock.node == node => {
                lock.session = session;
                self.zxid += 1;
                lock.czxid = self.zxid;
                self.lock.version += 1;
                true
            }
            _ => false,
        }
    }

    /// Writes node `i`'s state.
    pub fn publish(&mut self, i: usize, state: NodeState) {
        self.zxid += 1;
        self.states[i] = Some((state, self.zxid));
    }
}
