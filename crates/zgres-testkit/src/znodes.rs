//! Writing zgres znodes directly, as fixtures for tests that follow ZooKeeper without running
//! deadmen (the sync daemon, zgresctl). Nodes are `127.0.0.1:PORT` under the default root
//! `/zgres`; locks and connection info are ephemeral, as deadmen write them (readers ignore
//! persistent ones), so they live as long as the client that wrote them.

use zgres_schema::documents::{ConnInfo, Lock, Tags};
use zgres_schema::{encode, Timeline};
use zookeeper_client as zk;

fn persistent() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

/// Creates `/zgres/lock` and `/zgres/conn`.
///
/// # Panics
/// When ZooKeeper refuses (a test fixture: failing loudly is the point).
pub async fn make_dirs(client: &zk::Client) {
    for dir in ["/zgres/lock", "/zgres/conn"] {
        client.mkdir(dir, &persistent()).await.unwrap();
    }
}

fn ephemeral() -> zk::CreateOptions<'static> {
    zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all())
}

/// Creates `path` with `data` as an ephemeral znode of `client`'s session, or overwrites it.
///
/// # Panics
/// When ZooKeeper refuses.
pub async fn put(client: &zk::Client, path: &str, data: &[u8]) {
    if client.create(path, data, &ephemeral()).await.is_err() {
        client.set_data(path, data, None).await.unwrap();
    }
}

/// The lock document naming `127.0.0.1:port`.
pub fn lock_doc(port: u16) -> Vec<u8> {
    encode(&Lock {
        node: format!("127.0.0.1:{port}").parse().unwrap(),
        timeline: Timeline::FIRST,
    })
    .unwrap()
}

/// Publishes `/conn/{group}_127.0.0.1:{port}` (a healthy node).
///
/// # Panics
/// When ZooKeeper refuses.
pub async fn add_node(client: &zk::Client, group: &str, port: u16) {
    let conn = ConnInfo {
        role: None,
        api_port: None,
        host: "127.0.0.1".into(),
        port,
        dbname: None,
        tags: Tags::default(),
    };
    let path = format!("/zgres/conn/{group}_127.0.0.1:{port}");
    put(client, &path, &encode(&conn).unwrap()).await;
}

/// Points `/lock/{group}` at `127.0.0.1:port`.
///
/// # Panics
/// When ZooKeeper refuses.
pub async fn set_lock(client: &zk::Client, group: &str, port: u16) {
    put(client, &format!("/zgres/lock/{group}"), &lock_doc(port)).await;
}
