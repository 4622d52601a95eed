//! Each member's view of its peers (its `server.N=` lines), and an ensemble whose last
//! member can be cut from the others while its clients still reach it.

use std::fmt::Write as _;

use super::ZkCluster;
use crate::fault_proxy::{FaultProxy, ProxyMode};
use crate::Result;

impl ZkCluster {
    /// A 3-member ensemble whose third member (index 2) reaches the other two only through
    /// fault proxies, and starts after they formed a quorum, so it is a follower.
    /// [`ZkCluster::isolate_last_member`] then cuts it from its peers while its clients still
    /// reach it: a member that lost its leader but has not noticed yet.
    ///
    /// # Errors
    /// As [`ZkCluster::standalone`].
    pub async fn start_with_isolatable_follower() -> Result<Self> {
        Self::build(3, false, &[], true).await
    }

    /// Cuts the last member from the others (`true`: every peer link holds its traffic) or
    /// reconnects it (`false`). Its client port is untouched.
    pub fn isolate_last_member(&self, cut: bool) {
        let mode = if cut {
            ProxyMode::Blackhole
        } else {
            ProxyMode::Pass
        };
        for link in &self.peer_links {
            link.set_mode(mode);
        }
    }
}

/// The `server.N=` lines of each member of an ensemble on `ports` (client, quorum, election;
/// none for a standalone server). With `isolatable_last`, the last member's links to the
/// others, both ways (either side may open them), go through the returned proxies.
///
/// # Errors
/// When a proxy cannot be started.
pub(super) fn views(
    ports: &[(u16, u16, u16)],
    isolatable_last: bool,
) -> Result<(Vec<String>, Vec<FaultProxy>)> {
    let size = ports.len();
    let mut links = Vec::new();
    let mut views = vec![String::new(); size];
    if size < 2 {
        return Ok((views, links));
    }
    let last = size - 1;
    for (member, view) in views.iter_mut().enumerate() {
        for (peer, &(_, quorum, election)) in ports.iter().enumerate() {
            let proxied = isolatable_last && member != peer && (member == last || peer == last);
            let mut reach = |port: u16| -> Result<u16> {
                if !proxied {
                    return Ok(port);
                }
                let link = FaultProxy::start(([127, 0, 0, 1], port).into())?;
                let port = link.addr().port();
                links.push(link);
                Ok(port)
            };
            let (quorum, election) = (reach(quorum)?, reach(election)?);
            let _ = writeln!(view, "server.{}=127.0.0.1:{quorum}:{election}", peer + 1);
        }
    }
    Ok((views, links))
}
