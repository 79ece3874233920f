# Terraform >= 1.5 or OpenTofu >= 1.6, and the Aiven provider at one exact version:
# tests/infra.rs checks every resource, argument and block in this directory
# against the schema of that version (through the Pulumi Aiven package generated
# from it), so a provider upgrade is a deliberate change of both pins.
terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aiven = {
      source  = "aiven/aiven"
      version = "4.60.0"
    }
  }
}

provider "aiven" {
  api_token = var.aiven_api_token
}
