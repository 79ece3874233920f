# Aiven for ClickHouse: `button sink` (or the ClickHouse-Kafka integration) writes
# here, and `serve --stats-from clickhouse` reads from here over HTTPS.

resource "aiven_clickhouse" "clickhouse" {
  project      = var.aiven_project_name
  cloud_name   = var.cloud_name
  plan         = var.clickhouse_plan
  service_name = "${var.name_prefix}-clickhouse"

  tag {
    key   = "application"
    value = var.application_tag
  }
}

# The HTTPS interface (the app speaks ClickHouse's HTTP protocol), public route.
data "aiven_service_component" "clickhouse_https" {
  project      = aiven_clickhouse.clickhouse.project
  service_name = aiven_clickhouse.clickhouse.service_name
  component    = "clickhouse_https"
  route        = "dynamic"
}
