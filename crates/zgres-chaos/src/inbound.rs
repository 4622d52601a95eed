//! The way in to one node's PostgreSQL from its peers, which the chaos faults break: a router
//! at its advertised address and fault proxies behind it ([`crate::peer_router`]).

use std::net::SocketAddr;

use zgres_testkit::fault_proxy::{FaultProxy, ProxyMode};

use crate::peer_router::{PeerRouter, Routes};

/// How peers reach one node's PostgreSQL: a router at its advertised address, and behind it a
/// fault proxy for each peer's WAL receiver and one for every other connection.
pub struct Inbound {
    /// Routes by `application_name`; declared first, so that it stops accepting first.
    _router: PeerRouter,
    /// Indexed by peer; `None` at the node's own index.
    streams: Vec<Option<FaultProxy>>,
    others: FaultProxy,
}

impl Inbound {
    /// Node `i`'s, where node `j` advertises `advertised[j]` (its node id, which its WAL
    /// receiver gives as `application_name`) and serves on 127.0.0.1 at the same port.
    /// Panics when a proxy or the router cannot start.
    pub fn start(i: usize, advertised: &[SocketAddr]) -> Inbound {
        let server: SocketAddr = ([127, 0, 0, 1], advertised[i].port()).into();
        let streams: Vec<Option<FaultProxy>> = (0..advertised.len())
            .map(|j| (j != i).then(|| FaultProxy::start(server).expect("a stream proxy")))
            .collect();
        let others = FaultProxy::start(server).expect("an inbound proxy");
        let by_name = streams
            .iter()
            .zip(advertised)
            .filter_map(|(proxy, peer)| proxy.as_ref().map(|p| (peer.to_string(), p.addr())))
            .collect();
        let routes = Routes {
            by_name,
            others: others.addr(),
        };
        let router = PeerRouter::start(advertised[i], routes).expect("a peer router");
        Inbound {
            _router: router,
            streams,
            others,
        }
    }

    /// Sets every proxy in front of the node to `mode`.
    pub fn set_all(&self, mode: ProxyMode) {
        self.others.set_mode(mode);
        for proxy in self.streams.iter().flatten() {
            proxy.set_mode(mode);
        }
    }

    /// Sets the proxy of `peer`'s WAL stream to the node to `mode`.
    pub fn set_stream(&self, peer: usize, mode: ProxyMode) {
        if let Some(proxy) = &self.streams[peer] {
            proxy.set_mode(mode);
        }
    }
}
