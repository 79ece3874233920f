# Optional on-platform sinks, the original app's way (both off by default:
# `button sink` does the same work, effectively once). Their settings come from
# the documented files in integrations/, so the two cannot drift apart; only the
# connection details and the message format are filled in here.
#
# Both read Avro (`serve --format avro`, which scripts/write-env sets) and need the
# tables that `button migrate` creates: run it before enabling them.

locals {
  clickhouse_queue = jsondecode(file("${path.module}/../integrations/aiven-clickhouse-integration.json")).tables[0]

  jdbc_sink = {
    for key, value in jsondecode(file("${path.module}/../integrations/jdbc-sink-connector.json")) :
    key => value if key != "_comment"
  }

  # https://USER:PASSWORD@HOST:PORT -> ["https", "USER:PASSWORD", "HOST:PORT"]: the
  # connector takes the registry address and its credentials separately.
  registry = regex("^(https?)://([^@]+)@(.+)$", aiven_kafka.kafka.kafka[0].schema_registry_uri)
}

# ClickHouse reads the topic into service_<kafka service>.button_presses_queue; a
# materialized view (integrations/clickhouse-kafka-engine.sql) copies it into
# button_presses. At-least-once; the table's dedup on event_id absorbs repeats.
resource "aiven_service_integration" "clickhouse_kafka" {
  count = var.enable_clickhouse_kafka_integration ? 1 : 0

  project                  = var.aiven_project_name
  integration_type         = "clickhouse_kafka"
  source_service_name      = aiven_kafka.kafka.service_name
  destination_service_name = aiven_clickhouse.clickhouse.service_name

  clickhouse_kafka_user_config {
    tables {
      name       = local.clickhouse_queue.name
      group_name = local.clickhouse_queue.group_name
      # The events are Avro with the registry's schema id (Confluent framing).
      data_format = "AvroConfluent"

      topics {
        name = aiven_kafka_topic.button_presses.topic_name
      }

      dynamic "columns" {
        for_each = local.clickhouse_queue.columns
        content {
          name = columns.value.name
          type = columns.value.type
        }
      }
    }
  }
}

# Kafka Connect's JDBC sink into the button_presses table (upsert on event_id).
resource "aiven_kafka_connector" "jdbc_sink" {
  count = var.enable_jdbc_sink ? 1 : 0

  project        = aiven_kafka.kafka.project
  service_name   = aiven_kafka.kafka.service_name
  connector_name = local.jdbc_sink["name"]

  config = merge(local.jdbc_sink, {
    "topics"                               = aiven_kafka_topic.button_presses.topic_name
    "tasks.max"                            = tostring(var.topic_partitions)
    "connection.url"                       = "jdbc:postgresql://${aiven_pg.pg.service_host}:${aiven_pg.pg.service_port}/${aiven_pg.pg.pg[0].dbname}?sslmode=require&stringtype=unspecified"
    "connection.user"                      = aiven_pg.pg.service_username
    "connection.password"                  = aiven_pg.pg.service_password
    "value.converter.schema.registry.url"  = "${local.registry[0]}://${local.registry[2]}"
    "value.converter.basic.auth.user.info" = local.registry[1]
  })
}
