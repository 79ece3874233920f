# Aiven for PostgreSQL: `button sink` (or the JDBC sink connector) writes here, and
# `serve --stats-from postgres` can read from here.

resource "aiven_pg" "pg" {
  project      = var.aiven_project_name
  cloud_name   = var.cloud_name
  plan         = var.pg_plan
  service_name = "${var.name_prefix}-pg"

  tag {
    key   = "application"
    value = var.application_tag
  }

  pg_user_config {
    pg_version = var.pg_version
  }
}
