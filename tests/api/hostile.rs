//! A server on the internet gets probed: forged and oversized cookies, spoofed
//! forwarding headers, cross-site posts, huge bodies and headers, slow clients,
//! unknown methods and paths, bytes that are not UTF-8. Each gets a clean 4xx (or
//! the cut connection a slow client deserves), the server stays healthy, and no
//! address shows up in its logs. Also: the press limits, end to end.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::process::ServerProcess;

/// Sends `request` as raw bytes; returns the status line's code (0 when the
/// server closed without answering) and the whole response as text.
async fn raw(server: &ServerProcess, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    // The server may answer (and close) before it has read everything we send.
    let _ = stream.write_all(request).await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

fn press_with(headers: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /press HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nHX-Request: true\r\nConnection: close\r\n{headers}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[tokio::test]
async fn hostile_requests_get_clean_client_errors_and_the_server_stays_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[("RUST_LOG", "debug")]).await;
    let spoofed = "81.2.69.142";

    // A forged cookie is ignored: the press counts, in a new session.
    let (code, text) = raw(
        &server,
        &press_with("Cookie: button_session=forged.value\r\n", "last="),
    )
    .await;
    assert_eq!(code, 200, "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("set-cookie: button_session="),
        "{text}"
    );

    // Garbage in the forwarding headers from our proxy: the press still counts.
    for header in [
        "X-Forwarded-For: not-an-address\r\n".to_owned(),
        format!("X-Forwarded-For: {}\r\n", ",".repeat(4000)),
        format!("Forwarded: for=\"[{spoofed}\r\n"),
    ] {
        let (code, text) = raw(&server, &press_with(&header, "last=")).await;
        assert_eq!(code, 200, "{header}: {text}");
    }

    // (what, request, status; 4 for "some 4xx" where the HTTP parser decides which)
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "a press from another site's page",
            press_with("Sec-Fetch-Site: cross-site\r\nOrigin: https://evil.example\r\n", "last="),
            403,
        ),
        (
            "an oversized cookie",
            press_with(&format!("Cookie: button_session={}\r\n", "a".repeat(100_000)), "last="),
            431,
        ),
        (
            "a huge body",
            b"POST /press HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10000000\r\nConnection: close\r\n\r\nlast=".to_vec(),
            413,
        ),
        (
            "an unknown method",
            b"BREW / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_vec(),
            405,
        ),
        (
            "an unknown path",
            b"GET /wp-admin/install.php HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_vec(),
            404,
        ),
        (
            "a path that is not UTF-8",
            b"GET /\xff\xfe HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_vec(),
            4,
        ),
        (
            "a header value that is not UTF-8",
            b"POST /press HTTP/1.1\r\nHost: localhost\r\nCookie: \xff\xfe\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
            303, // counted, and sent back to the page (no HX-Request)
        ),
        (
            "a request line that is not HTTP",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 hello\r\n\r\n".to_vec(),
            4,
        ),
        (
            "a form that is not a form",
            press_with("", "%%%\u{0}last=\u{7f}"),
            200,
        ),
    ];
    for (what, request, want) in cases {
        let (code, text) = raw(&server, &request).await;
        if want < 100 {
            assert_eq!(code / 100, want, "{what}: {text}");
        } else {
            assert_eq!(code, want, "{what}: {text}");
        }
        assert!(
            !(500..600).contains(&code),
            "{what}: a server error: {text}"
        );
    }

    // A slow client that never finishes its headers is cut off.
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), slow.read_to_end(&mut rest)).await;
    assert!(
        read.is_ok(),
        "the slow client was still connected after 30 s"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "cut off before it had a fair chance"
    );

    // Still healthy, and the probes left no address in the logs or the metrics,
    // which counted them.
    let health = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for counted in [
        "button_http_responses_total{status=\"403\"} 1",
        "button_http_responses_total{status=\"413\"} 1",
        "button_events_total{action=\"PressButton\",outcome=\"stored\"}",
        "button_publish_seconds_bucket",
    ] {
        assert!(metrics.contains(counted), "{counted} in:\n{metrics}");
    }
    assert!(!metrics.contains(spoofed), "{metrics}");
    let logs = server.logs();
    assert!(!logs.contains(spoofed), "{spoofed} in the logs:\n{logs}");
    assert!(!logs.contains("panicked"), "{logs}");
}

#[tokio::test]
async fn a_burst_from_one_address_gets_429s_while_another_address_is_unaffected() {
    let dir = tempfile::tempdir().unwrap();
    // 5 presses a second per address, a burst of 15: low, so that even a slow
    // machine presses faster than that.
    let server = ServerProcess::start(dir.path(), &[("BUTTON_PRESS_LIMIT_PER_ADDRESS", "5")]).await;
    let http = reqwest::Client::new();
    let press = |ip: &'static str| {
        http.post(server.url("/press"))
            .header("x-forwarded-for", ip)
            .header("hx-request", "true")
            .form(&[("last", "")])
            .send()
    };
    let mut refused = None;
    for _ in 0..100 {
        let r = press("198.51.100.7").await.unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(r);
            break;
        }
        assert_eq!(r.status(), StatusCode::OK);
    }
    let refused = refused.expect("100 presses in a moment from one address were all accepted");
    assert_eq!(refused.headers()["retry-after"], "1");
    let body = refused.text().await.unwrap();
    assert!(
        body.contains("Slow down. Nothing is happening anyway."),
        "{body}"
    );

    let other = press("203.0.113.50").await.unwrap();
    assert_eq!(
        other.status(),
        StatusCode::OK,
        "another address is not limited"
    );
}
