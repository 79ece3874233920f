# Everything the app needs to reach the services; scripts/write-env turns these
# into .env and certs/. Secrets are marked sensitive: `output` hides them unless
# asked for by name or with -json.

data "aiven_project" "project" {
  project = var.aiven_project_name
}

output "kafka_service_name" {
  description = "Name of the Kafka service (for the Aiven Console and `avn`)."
  value       = aiven_kafka.kafka.service_name
}

output "kafka_service_uri" {
  description = "Kafka bootstrap address, HOST:PORT (client-certificate route)."
  value       = aiven_kafka.kafka.service_uri
  sensitive   = true
}

output "ca_cert" {
  description = "The project's CA certificate (PEM): Kafka and PostgreSQL present certificates it signed."
  value       = data.aiven_project.project.ca_cert
}

output "kafka_access_cert" {
  description = "Kafka client certificate (PEM) of the service user avnadmin."
  value       = aiven_kafka.kafka.kafka[0].access_cert
  sensitive   = true
}

output "kafka_access_key" {
  description = "Kafka client private key (PEM) of the service user avnadmin."
  value       = aiven_kafka.kafka.kafka[0].access_key
  sensitive   = true
}

output "schema_registry_uri" {
  description = "Schema registry (Karapace), https://USER:PASSWORD@HOST:PORT."
  value       = aiven_kafka.kafka.kafka[0].schema_registry_uri
  sensitive   = true
}

output "topic_name" {
  description = "The topic the events go to."
  value       = aiven_kafka_topic.button_presses.topic_name
}

output "pg_service_name" {
  description = "Name of the PostgreSQL service."
  value       = aiven_pg.pg.service_name
}

output "pg_service_uri" {
  description = "PostgreSQL URI, postgres://USER:PASSWORD@HOST:PORT/defaultdb?sslmode=require."
  value       = aiven_pg.pg.service_uri
  sensitive   = true
}

output "clickhouse_service_name" {
  description = "Name of the ClickHouse service."
  value       = aiven_clickhouse.clickhouse.service_name
}

output "ch_host" {
  description = "ClickHouse HTTPS host."
  value       = data.aiven_service_component.clickhouse_https.host
}

output "ch_https_port" {
  description = "ClickHouse HTTPS port."
  value       = data.aiven_service_component.clickhouse_https.port
}

output "ch_user" {
  description = "ClickHouse user."
  value       = aiven_clickhouse.clickhouse.service_username
}

output "ch_password" {
  description = "ClickHouse password."
  value       = aiven_clickhouse.clickhouse.service_password
  sensitive   = true
}

output "clickhouse_kafka_database" {
  description = "With the ClickHouse-Kafka integration: the ClickHouse database holding button_presses_queue (null without it)."
  value       = var.enable_clickhouse_kafka_integration ? "service_${aiven_kafka.kafka.service_name}" : null
}
