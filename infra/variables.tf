# Inputs. Only the token and the project have no default; put them in
# terraform.tfvars (git-ignored; see terraform.tfvars.example) or in
# TF_VAR_aiven_api_token / TF_VAR_aiven_project_name.

variable "aiven_api_token" {
  description = "Aiven API token (Aiven Console > User information > Tokens). Never commit it."
  type        = string
  sensitive   = true
}

variable "aiven_project_name" {
  description = "Name of an existing Aiven project that the services are created in."
  type        = string
}

variable "cloud_name" {
  description = "Cloud and region of all services, for example google-us-east1 or google-europe-west2 (the two regions priced in the README)."
  type        = string
  default     = "google-us-east1"
}

variable "name_prefix" {
  description = "Prefix of the service names (<prefix>-kafka, <prefix>-pg, <prefix>-clickhouse); service names are unique within a project."
  type        = string
  default     = "button"
}

variable "application_tag" {
  description = "Value of the 'application' tag put on every service."
  type        = string
  default     = "button"
}

variable "kafka_plan" {
  description = "Aiven for Apache Kafka plan. Kafka Connect on the Kafka service itself (for the JDBC sink) needs a business or premium plan."
  type        = string
  default     = "business-4"
}

variable "kafka_tiered_storage" {
  description = "Enable tiered storage on the Kafka service and the topic: older segments move to object storage, topic_local_retention_ms stays on the brokers."
  type        = bool
  default     = false
}

variable "pg_plan" {
  description = "Aiven for PostgreSQL plan."
  type        = string
  default     = "startup-4"
}

variable "pg_version" {
  description = "PostgreSQL major version."
  type        = string
  default     = "17"
}

variable "clickhouse_plan" {
  description = "Aiven for ClickHouse plan."
  type        = string
  default     = "startup-16"
}

variable "topic_partitions" {
  description = "Partitions of the button_presses topic: the most `button sink` processes (one consumer group) that can share the work."
  type        = number
  default     = 3
}

variable "topic_replication" {
  description = "Replication factor of the button_presses topic (at most the number of Kafka nodes)."
  type        = number
  default     = 2
}

variable "topic_retention_ms" {
  description = "How long the topic keeps events, in milliseconds (-1: forever). The stores keep them after that."
  type        = number
  default     = 604800000
}

variable "topic_local_retention_ms" {
  description = "With tiered storage: how long segments stay on the brokers' disks, in milliseconds, before only object storage has them."
  type        = number
  default     = 3600000
}

variable "enable_clickhouse_kafka_integration" {
  description = "On-platform ClickHouse sink: a ClickHouse-Kafka integration that reads the topic into the table button_presses_queue (then create the materialized view; see the README). Default off: `button sink` writes ClickHouse."
  type        = bool
  default     = false
}

variable "enable_jdbc_sink" {
  description = "On-platform PostgreSQL sink: the JDBC sink connector on the Kafka service's Kafka Connect (run `button migrate` first; it writes into its table). Default off: `button sink` writes PostgreSQL."
  type        = bool
  default     = false
}
