# Aiven for Apache Kafka with its schema registry (Karapace, for the Avro events) and
# Kafka Connect (for the optional JDBC sink), and the topic the app writes to.

resource "aiven_kafka" "kafka" {
  project      = var.aiven_project_name
  cloud_name   = var.cloud_name
  plan         = var.kafka_plan
  service_name = "${var.name_prefix}-kafka"

  tag {
    key   = "application"
    value = var.application_tag
  }

  kafka_user_config {
    schema_registry = true
    kafka_connect   = true

    kafka {
      # `button migrate` and this file create the topic; a typo in a topic name
      # must fail, not create an empty topic.
      auto_create_topics_enable = false
    }

    tiered_storage {
      enabled = var.kafka_tiered_storage
    }
  }
}

resource "aiven_kafka_topic" "button_presses" {
  project      = aiven_kafka.kafka.project
  service_name = aiven_kafka.kafka.service_name
  # The app's default topic, and the one the on-platform integrations read.
  topic_name  = "button_presses"
  partitions  = var.topic_partitions
  replication = var.topic_replication

  tag {
    key   = "application"
    value = var.application_tag
  }

  config {
    cleanup_policy        = "delete"
    retention_ms          = tostring(var.topic_retention_ms)
    remote_storage_enable = var.kafka_tiered_storage
    # -2: as long as retention_ms (Kafka's default when nothing is tiered).
    local_retention_ms = var.kafka_tiered_storage ? tostring(var.topic_local_retention_ms) : "-2"
  }
}
