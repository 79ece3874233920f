//! Presses over HTTP into the topic: once each, keyed and ordered by session,
//! with no address anywhere in a record.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;

use crate::common::kafka::{by_key, kafka_args, new_topic, read_topic};
use crate::common::{services, spawn_app_with};
use button::domain::Action;

#[tokio::test]
async fn presses_over_http_land_in_the_topic_once_each_keyed_and_ordered_by_session() {
    let Some(broker) = services::kafka() else {
        return;
    };
    let topic = new_topic(&broker).await;
    let app = Arc::new(
        spawn_app_with(|a| {
            a.kafka = kafka_args(&broker, &topic);
        })
        .await,
    );
    // Distinctive addresses: they must not appear anywhere in the topic.
    let ips = [
        "81.2.69.142",
        "2001:67c:2e8:22::c100:68b",
        "8.8.8.8",
        "193.0.6.139",
    ];
    let (sessions, presses_each) = (8, 25);

    let tasks: Vec<_> = (0..sessions)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                let mut v = app.visitor(ips[i % ips.len()]);
                let mut ids = Vec::new();
                for _ in 0..presses_each {
                    let r = v.press().await;
                    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
                    ids.push(r.event_id().unwrap());
                }
                (v.session_id(), ids)
            })
        })
        .collect();
    let mut acked = Vec::new();
    for t in tasks {
        acked.push(t.await.unwrap());
    }
    let n = sessions * presses_each;

    let records = read_topic(&broker, &topic, n, Duration::from_secs(30));
    assert_eq!(
        records.len(),
        n,
        "exactly one record per acknowledged press"
    );
    let events: Vec<_> = records
        .iter()
        .map(|r| button::encoding::decode(&r.value, None).expect("every record decodes"))
        .collect();
    assert!(events.iter().all(|e| e.action == Action::PressButton));
    let ids: HashSet<_> = events.iter().map(|e| e.event_id).collect();
    let acked_ids: HashSet<_> = acked
        .iter()
        .flat_map(|(_, ids)| ids.iter().copied())
        .collect();
    assert_eq!(ids, acked_ids);

    // Keyed by session, and each session's presses in the order they were made.
    let grouped = by_key(&records);
    assert_eq!(grouped.len(), sessions);
    for (session, ids) in &acked {
        let records = &grouped[session.as_bytes()];
        assert!(records.iter().all(|r| r.partition == records[0].partition));
        let in_topic: Vec<_> = records
            .iter()
            .map(|r| button::encoding::decode(&r.value, None).unwrap().event_id)
            .collect();
        assert_eq!(&in_topic, ids, "session {session} out of order");
    }

    for ip in ips {
        let ip: IpAddr = ip.parse().unwrap();
        let mut needles = vec![ip.to_string().into_bytes()];
        needles.push(match ip {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        });
        for r in &records {
            for hay in [&r.key, &r.value]
                .into_iter()
                .chain(r.headers.iter().map(|(_, v)| v))
            {
                for needle in &needles {
                    assert!(
                        !hay.windows(needle.len()).any(|w| w == needle.as_slice()),
                        "{ip} in a record"
                    );
                }
            }
            assert!(r.headers.iter().all(|(k, _)| !k.contains(&ip.to_string())));
        }
    }
}

#[tokio::test]
async fn page_views_and_presses_carry_the_visitors_country() {
    let Some(broker) = services::kafka() else {
        return;
    };
    let topic = new_topic(&broker).await;
    let app = spawn_app_with(|a| a.kafka = kafka_args(&broker, &topic)).await;
    let mut v = app.visitor("81.2.69.142");
    assert_eq!(v.get("/").await.status, StatusCode::OK);
    assert_eq!(v.press().await.status, StatusCode::OK);
    assert_eq!(v.get("/readyz").await.status, StatusCode::OK);
    // No statistics store in this mode: the dashboard shows what its live view
    // read from the topic since the server started.
    crate::common::eventually(
        "the live view to count the press read back from the topic",
        Duration::from_secs(20),
        async || v.stats().await["total"] == 1,
    )
    .await;
    let stats = v.get("/stats").await;
    assert_eq!(stats.status, StatusCode::OK);
    assert!(
        stats
            .body
            .contains("United Kingdom is #1 at pressing nothing")
    );

    let records = read_topic(&broker, &topic, 2, Duration::from_secs(20));
    let events: Vec<_> = records
        .iter()
        .map(|r| button::encoding::decode(&r.value, None).unwrap())
        .collect();
    assert_eq!(events.len(), 2);
    assert!(
        events
            .iter()
            .all(|e| e.location.country_code == "GB" && e.cohort == Some(0))
    );
    let actions: HashSet<_> = events.iter().map(|e| e.action).collect();
    assert_eq!(
        actions,
        HashSet::from([Action::EnterPage, Action::PressButton])
    );
}
