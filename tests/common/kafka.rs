//! Kafka helpers over a real broker: settings, a fresh topic per test, reading a
//! topic back from the beginning, and waiting for a group's committed offsets.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use button::config::KafkaArgs;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::cli;

/// How long a read keeps going once it has what it expects, so that extra
/// records (duplicates) would be seen too. Tansu's high watermarks are wrong, so
/// "the end of the partition" cannot be asked for instead.
const SETTLE: Duration = Duration::from_millis(1500);

/// Kafka settings for `broker` and `topic`, parsed like the command line.
pub fn kafka_args(broker: &str, topic: &str) -> KafkaArgs {
    cli::migrate(&["--kafka-brokers", broker, "--topic", topic]).kafka
}

/// A new topic with three partitions.
pub async fn new_topic(broker: &str) -> String {
    let topic = format!("test-{}", uuid::Uuid::new_v4().simple());
    button::kafka::admin::ensure_topic(&kafka_args(broker, &topic).require().unwrap(), 3, 1)
        .await
        .expect("the test broker creates topics");
    topic
}

/// One record as read back.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Every record of `topic`, read from the beginning of each partition. Waits for
/// at least `expected` (at most `timeout`), then keeps reading for [`SETTLE`].
pub fn read_topic(broker: &str, topic: &str, expected: usize, timeout: Duration) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", format!("test-reader-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut settle_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if now > deadline || settle_until.is_some_and(|s| now > s) {
            break;
        }
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|hd| (hd.key.to_owned(), hd.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default();
            out.push(Record {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().unwrap_or_default().to_vec(),
                value: m.payload().unwrap_or_default().to_vec(),
                headers,
            });
        }
        if out.len() >= expected && settle_until.is_none() {
            settle_until = Some(Instant::now() + SETTLE);
        }
    }
    out
}

/// Records grouped by key, in partition order.
pub fn by_key(records: &[Record]) -> HashMap<Vec<u8>, Vec<Record>> {
    let mut sorted = records.to_vec();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    let mut m: HashMap<Vec<u8>, Vec<Record>> = HashMap::new();
    for r in sorted {
        m.entry(r.key.clone()).or_default().push(r);
    }
    m
}

/// Waits until consumer group `group` has committed, in every partition of `last`,
/// an offset past the one given there (everything up to it is done); panics after
/// `timeout`. Asks the group coordinator without joining the group.
pub async fn wait_for_commits(
    broker: &str,
    topic: &str,
    group: &str,
    last: &BTreeMap<i32, i64>,
    timeout: Duration,
) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in last.keys() {
        tpl.add_partition(topic, *p);
    }
    let until = Instant::now() + timeout;
    loop {
        let committed: BTreeMap<i32, i64> = consumer
            .committed_offsets(tpl.clone(), Duration::from_secs(10))
            .map(|c| {
                c.elements()
                    .iter()
                    .filter_map(|e| match e.offset() {
                        Offset::Offset(o) => Some((e.partition(), o)),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        if last
            .iter()
            .all(|(p, o)| committed.get(p).is_some_and(|c| c > o))
        {
            return;
        }
        assert!(
            Instant::now() < until,
            "after {timeout:?}, group {group} has committed {committed:?}, want past {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
