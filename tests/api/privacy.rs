//! No client address leaves the request: not in the store, the logs, the events or
//! the cookie. Checked for an IPv4 and an IPv6 address, as text and as raw bytes.

use std::net::IpAddr;

use crate::common::app::open_session;
use crate::common::process::ServerProcess;
use button::encoding;

/// Every form an address could take when it leaks.
fn needles(ip: IpAddr) -> Vec<(String, Vec<u8>)> {
    let mut n = vec![(format!("text {ip}"), ip.to_string().into_bytes())];
    match ip {
        IpAddr::V4(v4) => n.push(("4 raw bytes".into(), v4.octets().to_vec())),
        IpAddr::V6(v6) => {
            n.push(("16 raw bytes".into(), v6.octets().to_vec()));
            let full: Vec<String> = v6.segments().iter().map(|s| format!("{s:04x}")).collect();
            n.push(("expanded text".into(), full.join(":").into_bytes()));
        }
    }
    n
}

fn assert_absent(what: &str, haystack: &[u8], ip: IpAddr) {
    for (form, needle) in needles(ip) {
        assert!(
            !haystack
                .windows(needle.len())
                .any(|w| w == needle.as_slice()),
            "{ip} found in {what} as {form}"
        );
    }
}

#[tokio::test]
async fn a_visitors_address_appears_nowhere() {
    // Distinctive addresses the geo database knows (GB and NL).
    let addresses: [IpAddr; 2] = [
        "81.2.69.142".parse().unwrap(),
        "2001:67c:2e8:22::c100:68b".parse().unwrap(),
    ];
    let dir = tempfile::tempdir().unwrap();
    // Debug logging, request tracing included: the most a server would ever log.
    let mut server = ServerProcess::start(dir.path(), &[("RUST_LOG", "debug")]).await;
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut cookies = Vec::new();

    for ip in addresses {
        let page = http
            .get(format!("{base}/"))
            .header("x-forwarded-for", ip.to_string())
            .send()
            .await
            .unwrap();
        let cookie = page.headers()["set-cookie"].to_str().unwrap().to_owned();
        for _ in 0..3 {
            let r = http
                .post(format!("{base}/press"))
                .header("hx-request", "true")
                .header("x-forwarded-for", ip.to_string())
                .header("cookie", cookie.split(';').next().unwrap())
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
        }
        // A visitor with no cookie whose forwarding header is garbage around the address.
        let odd = http
            .post(format!("{base}/press"))
            .header("x-forwarded-for", format!("{ip}, not-an-ip"))
            .send()
            .await
            .unwrap();
        assert!(odd.status().is_redirection());
        cookies.push(cookie);
    }
    let api = http
        .get(format!("{base}/api/stats"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Stop gracefully so everything that would be written is written.
    server.terminate();

    let events = button::store::sqlite::read_all(&dir.path().join("events.sqlite3")).unwrap();
    assert_eq!(
        events.len(),
        2 * 5,
        "page views and presses of both visitors"
    );
    let codes: Vec<_> = events
        .iter()
        .map(|e| e.location.country_code.as_str())
        .collect();
    assert!(codes.contains(&"GB") && codes.contains(&"NL"), "{codes:?}");
    let logs = server.logs();
    assert!(logs.contains("DEBUG"), "debug logging was on");

    for ip in addresses {
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            assert_absent(
                &path.display().to_string(),
                &std::fs::read(&path).unwrap(),
                ip,
            );
        }
        assert_absent("the logs", logs.as_bytes(), ip);
        assert_absent("/api/stats", api.as_bytes(), ip);
        for e in &events {
            assert_absent("a JSON event", &encoding::json::encode(e), ip);
            assert_absent("an Avro event", &encoding::avro::encode(e, 1), ip);
        }
        for c in &cookies {
            assert_absent("a cookie", c.as_bytes(), ip);
            let opened = serde_json::to_vec(&open_session(c)).unwrap();
            assert_absent("a decoded cookie", &opened, ip);
        }
    }
}
