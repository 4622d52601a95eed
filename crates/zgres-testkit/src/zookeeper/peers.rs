//! Each member's view of its peers (its `server.N=` lines), and an ensemble whose last
//! member can be cut from the others while its clients still reach it.

use std::fmt::Write as _;

use super::ZkCluster;
use crate::fault_proxy::{FaultProxy, ProxyMode};
use crate::Result;

/// Which members' links to their peers go through fault proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Isolatable {
    /// None: a plain ensemble.
    None,
    /// The last member's, which starts after the others formed a quorum (a follower).
    Last,
    /// Every member's.
    Every,
}

/// A proxied link from `member` to `peer` (one of the peer's quorum or election ports).
#[derive(Debug)]
pub(super) struct PeerLink {
    member: usize,
    peer: usize,
    proxy: FaultProxy,
}

impl ZkCluster {
    /// A 3-member ensemble whose third member (index 2) reaches the other two only through
    /// fault proxies, and starts after they formed a quorum, so it is a follower.
    /// [`ZkCluster::isolate_last_member`] then cuts it from its peers while its clients still
    /// reach it: a member that lost its leader but has not noticed yet.
    ///
    /// # Errors
    /// As [`ZkCluster::standalone`].
    pub async fn start_with_isolatable_follower() -> Result<Self> {
        Self::build(3, false, &[], Isolatable::Last, None).await
    }

    /// As [`ZkCluster::start_with_isolatable_follower`], with `syncLimit` ticks: how long the
    /// cut follower goes on answering its clients (e.g. longer than their sessions).
    ///
    /// # Errors
    /// As [`ZkCluster::standalone`].
    pub async fn start_with_isolatable_follower_answering_for(sync_limit: u32) -> Result<Self> {
        Self::build(3, false, &[], Isolatable::Last, Some(sync_limit)).await
    }

    /// An ensemble of `size` members whose every link to a peer goes through a fault proxy:
    /// [`ZkCluster::isolate_member`] cuts any member (a follower or the leader) from the
    /// others while its clients still reach it.
    ///
    /// # Errors
    /// As [`ZkCluster::standalone`].
    pub async fn start_isolatable(size: usize) -> Result<Self> {
        Self::build(size, false, &[], Isolatable::Every, None).await
    }

    /// Cuts the last member from the others (`true`: every peer link holds its traffic) or
    /// reconnects it (`false`). Its client port is untouched.
    pub fn isolate_last_member(&self, cut: bool) {
        self.isolate_member(self.size() - 1, cut);
    }

    /// Cuts member `m` from the others (`true`: its links to them and theirs to it hold
    /// their traffic) or reconnects it (`false`). Its client port is untouched. Only links
    /// made isolatable at the start are affected.
    pub fn isolate_member(&self, m: usize, cut: bool) {
        let mode = if cut {
            ProxyMode::Blackhole
        } else {
            ProxyMode::Pass
        };
        self.set_member_links(m, mode);
    }

    /// Sets every isolatable link between member `m` and its peers to `mode`: `Blackhole`
    /// holds their traffic (a silent partition: a follower notices after `syncLimit` ticks,
    /// but the others' election can stall for minutes when `m` led them, its connections
    /// half-open), `Refuse` resets them (noticed at once), `Pass` joins it again.
    pub fn set_member_links(&self, m: usize, mode: ProxyMode) {
        let links = self.peer_links.iter();
        for link in links.filter(|l| l.member == m || l.peer == m) {
            link.proxy.set_mode(mode);
        }
    }
}

/// The `server.N=` lines of each member of an ensemble on `ports` (client, quorum, election;
/// none for a standalone server). The links `isolatable` names, both ways (either side may
/// open them), go through the returned proxies.
///
/// # Errors
/// When a proxy cannot be started.
pub(super) fn views(
    ports: &[(u16, u16, u16)],
    isolatable: Isolatable,
) -> Result<(Vec<String>, Vec<PeerLink>)> {
    let size = ports.len();
    let mut links = Vec::new();
    let mut views = vec![String::new(); size];
    if size < 2 {
        return Ok((views, links));
    }
    let last = size - 1;
    for (member, view) in views.iter_mut().enumerate() {
        for (peer, &(_, quorum, election)) in ports.iter().enumerate() {
            let proxied = member != peer
                && match isolatable {
                    Isolatable::None => false,
                    Isolatable::Last => member == last || peer == last,
                    Isolatable::Every => true,
                };
            let mut reach = |port: u16| -> Result<u16> {
                if !proxied {
                    return Ok(port);
                }
                let proxy = FaultProxy::start(([127, 0, 0, 1], port).into())?;
                let port = proxy.addr().port();
                links.push(PeerLink {
                    member,
                    peer,
                    proxy,
                });
                Ok(port)
            };
            let (quorum, election) = (reach(quorum)?, reach(election)?);
            let _ = writeln!(view, "server.{}=127.0.0.1:{quorum}:{election}", peer + 1);
        }
    }
    Ok((views, links))
}
