terraform {
  required_version = ">= 1.5.0"

  required_providers {
    azurerm = {
      source = "hashicorp/azurerm"
      # azurerm_function_app_flex_consumption and its managed-identity storage settings.
      version = ">= 4.22.0, < 5.0.0"
    }
  }
}

provider "azurerm" {
  # null: ARM_SUBSCRIPTION_ID, or the Azure CLI's current subscription.
  subscription_id = var.subscription_id

  # The storage account allows no shared keys: create its table and container with Entra ID.
  storage_use_azuread = true

  features {
    resource_group {
      prevent_deletion_if_contains_resources = true
    }
  }
}
