//! Accepting and serving connections, with the limits a public server needs:
//! at most `max_connections` at once (more wait in the kernel's backlog until one
//! closes), request headers complete within [`HEADER_TIMEOUT`] (a client that
//! trickles them, as in a slowloris attack, is cut off), and no more than
//! [`MAX_HEAD_BYTES`] of request line and headers (431 beyond). On shutdown no
//! new connection is accepted; open ones finish the request in flight and close,
//! and [`serve`] returns once every one has.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// How long a client may take to send a request's line and headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The most bytes of request line and headers hyper buffers (its minimum is 8 KiB).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Serves `router` on `listener` until `shutdown`, then drains.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    max_connections: usize,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(max_connections));
    let connections = TaskTracker::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_header_size(MAX_HEAD_BYTES);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait for some to close.
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        // Replies are small and answered at once: do not wait to fill a packet.
        let _ = stream.set_nodelay(true);
        let service = router.clone().map_request(
            move |mut request: axum::extract::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            },
        );
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let stop = shutdown.clone();
        connections.spawn(async move {
            let _permit = permit;
            tokio::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            // A client that went away or sent garbage: normal on the internet.
            if let Err(e) = ended {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
    connections.close();
    connections.wait().await;
}

/// The address `listener` is bound to.
pub fn local_addr(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .expect("a bound listener has an address")
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    /// Sends a request on `stream` and reads until the response's body ("ok").
    async fn ask(stream: &mut TcpStream) -> String {
        stream.write_all(GET).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0; 1024];
        while !got.ends_with(b"ok") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(got).unwrap()
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_wait_until_one_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(listener, router, 1, stop.clone()));

        let mut first = TcpStream::connect(addr).await.unwrap();
        assert!(ask(&mut first).await.starts_with("HTTP/1.1 200"));
        // The first connection stays open (keep-alive): the second is not served...
        let mut second = TcpStream::connect(addr).await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(300), ask(&mut second)).await;
        assert!(waiting.is_err(), "served beyond the cap");
        // ...until the first closes.
        drop(first);
        let mut third = TcpStream::connect(addr).await.unwrap();
        drop(second);
        let answered = tokio::time::timeout(Duration::from_secs(5), ask(&mut third)).await;
        assert!(
            answered
                .expect("served once a place was free")
                .starts_with("HTTP/1.1 200")
        );

        stop.cancel();
        drop(third);
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("stops once its connections are gone")
            .unwrap();
    }
}
