//! The fault proxy's modes, against a loopback echo server.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use zgres_testkit::fault_proxy::{FaultProxy, ProxyMode};

async fn echo_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

async fn round_trip(stream: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    stream.write_all(msg).await?;
    let mut buf = vec![0; msg.len()];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}

#[tokio::test]
async fn pass_forwards_both_ways() {
    let proxy = FaultProxy::start(echo_server().await).unwrap();
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(round_trip(&mut stream, b"hello").await.unwrap(), b"hello");
}

#[tokio::test]
async fn blackhole_holds_traffic_until_it_heals() {
    let proxy = FaultProxy::start(echo_server().await).unwrap();
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(round_trip(&mut stream, b"before").await.unwrap(), b"before");

    proxy.set_mode(ProxyMode::Blackhole);
    stream.write_all(b"during").await.unwrap();
    let mut buf = [0u8; 6];
    let silent =
        tokio::time::timeout(Duration::from_millis(300), stream.read_exact(&mut buf)).await;
    assert!(silent.is_err(), "nothing may come back through a blackhole");

    // New connections are accepted but get no answer either.
    let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
    fresh.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), fresh.read_exact(&mut one))
            .await
            .is_err()
    );

    proxy.set_mode(ProxyMode::Pass);
    stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"during", "held data flows once the partition heals");
}

#[tokio::test]
async fn refuse_resets_existing_and_new_connections() {
    let proxy = FaultProxy::start(echo_server().await).unwrap();
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(round_trip(&mut stream, b"ok").await.unwrap(), b"ok");

    proxy.set_mode(ProxyMode::Refuse);
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .expect("a refused connection is closed at once");
    assert!(matches!(read, Ok(0) | Err(_)), "got {read:?}");

    // The reset may already hit the handshake, or the first exchange.
    let attempt = async {
        let mut fresh = TcpStream::connect(proxy.addr()).await?;
        round_trip(&mut fresh, b"x").await
    };
    let result = tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .expect("a refused connection is closed at once");
    assert!(result.is_err(), "new connections are reset, got {result:?}");
}

#[tokio::test]
async fn delay_holds_each_chunk_back() {
    let proxy = FaultProxy::start(echo_server().await).unwrap();
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    let delay = Duration::from_millis(200);
    proxy.set_mode(ProxyMode::Delay(delay));
    let start = Instant::now();
    assert_eq!(round_trip(&mut stream, b"slow").await.unwrap(), b"slow");
    // Delayed once on the way in and once on the way back: it cannot arrive sooner.
    assert!(start.elapsed() >= 2 * delay, "took {:?}", start.elapsed());
}

/// A server that reads one request, answers and closes at once: ZooKeeper does this when a
/// client asks to resume an expired session.
async fn answer_and_close_server(answer: &'static [u8]) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 1];
                if stream.read_exact(&mut request).await.is_ok() {
                    let _ = stream.write_all(answer).await;
                }
                // Dropped here: the answer is followed by the end of the stream at once.
            });
        }
    });
    addr
}

/// Regression: the proxy dropped an answer the server sent just before closing (its reader saw
/// the end of the stream and ended the connection before the writer delivered what it had
/// read). A deadman resuming an expired ZooKeeper session then saw only closed connections and
/// retried for up to a minute instead of opening a new session.
#[tokio::test]
async fn an_answer_sent_just_before_close_is_delivered() {
    let answer: &[u8] = b"session expired";
    let proxy = FaultProxy::start(answer_and_close_server(b"session expired").await).unwrap();
    for mode in [ProxyMode::Pass, ProxyMode::Delay(Duration::from_millis(10))] {
        proxy.set_mode(mode);
        for _ in 0..50 {
            let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
            stream.write_all(b"?").await.unwrap();
            let mut got = Vec::new();
            let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut got))
                .await
                .expect("the proxy closes once the server has");
            assert!(read.is_ok(), "{mode:?}: {read:?}");
            assert_eq!(
                got, answer,
                "{mode:?}: the answer before the close was lost"
            );
        }
    }
}
