# The hook allowlist of each member's VMs (/etc/quiesce/hooks.json), generated from the policy by
# `python -m quiesce_azure.allowlists POLICY` (hooks.auto.tfvars.json) and written onto every
# selected VM by a managed run command running install-hooks.sh, which installs it only when its
# SHA-256 is the pinned one. The same VMs get the hook library
# (/usr/local/lib/quiesce/quiesce_hooks.py, docs/databases.md) the same way, from a second run
# command running install-library.sh. VMs selected by tags are found when Terraform plans: apply
# again after adding VMs. Tag-selected members must be in this provider's subscription.

variable "hook_allowlists" {
  description = "The hook allowlist of each member's VMs: subscription, resource group, VM names or tags, the members it serves and its JSON content. Written by python -m quiesce_azure.allowlists."
  type = map(object({
    subscription_id = string
    resource_group  = string
    vm_names        = optional(list(string))
    tags            = optional(map(string))
    members         = list(string)
    content         = string
  }))
  default = {}
}

data "azurerm_resources" "hook_vms" {
  for_each = { for name, a in var.hook_allowlists : name => a if a.tags != null }

  resource_group_name = each.value.resource_group
  type                = "Microsoft.Compute/virtualMachines"
  required_tags       = each.value.tags
}

data "azurerm_virtual_machine" "hook_vms" {
  for_each = merge([
    for name, a in var.hook_allowlists : {
      for vm in coalesce(a.vm_names, []) : "${name}/${vm}" => { resource_group = a.resource_group, name = vm }
    }
  ]...)

  resource_group_name = each.value.resource_group
  name                = each.value.name
}

locals {
  # One entry per VM: its id, location and the allowlist it gets.
  allowlist_vms = merge(
    {
      for key, vm in data.azurerm_virtual_machine.hook_vms : key => {
        id = vm.id, location = vm.location, allowlist = split("/", key)[0]
      }
    },
    merge([
      for name, found in data.azurerm_resources.hook_vms : {
        for vm in found.resources : "${name}/${vm.name}" => {
          id = vm.id, location = vm.location, allowlist = name
        }
      }
    ]...),
  )
  # The hook library shipped with this source tree; the run command pins its SHA-256.
  library_file = "${path.module}/../../shared/quiesce/hooklib/quiesce_hooks.py"

  allowlists_in_other_subscriptions = sort([
    for name, a in var.hook_allowlists : name if lower(a.subscription_id) != lower(local.subscription_id)
  ])
}

resource "azurerm_virtual_machine_run_command" "hook_allowlist" {
  for_each = local.allowlist_vms

  name               = "quiesce-hook-allowlist"
  location           = each.value.location
  virtual_machine_id = each.value.id

  source {
    script = file("${path.module}/install-hooks.sh")
  }

  parameter {
    name  = "QUIESCE_ALLOWLIST_B64"
    value = base64encode(var.hook_allowlists[each.value.allowlist].content)
  }

  parameter {
    name  = "QUIESCE_ALLOWLIST_SHA256"
    value = sha256(var.hook_allowlists[each.value.allowlist].content)
  }

  tags = local.tags

  lifecycle {
    precondition {
      condition     = length(local.allowlists_in_other_subscriptions) == 0
      error_message = "The hook allowlists ${join(", ", local.allowlists_in_other_subscriptions)} are for VMs in another subscription: apply them with a provider for that subscription (docs/azure-deploy.md, Hook allowlists)."
    }
  }
}

# The hook library on the same VMs, pinned by its SHA-256 like the allowlist: re-run whenever the
# library changes (its content and hash are parameters).
resource "azurerm_virtual_machine_run_command" "hook_library" {
  for_each = local.allowlist_vms

  name               = "quiesce-hook-library"
  location           = each.value.location
  virtual_machine_id = each.value.id

  source {
    script = file("${path.module}/install-library.sh")
  }

  parameter {
    name  = "QUIESCE_LIBRARY_B64"
    value = filebase64(local.library_file)
  }

  parameter {
    name  = "QUIESCE_LIBRARY_SHA256"
    value = filesha256(local.library_file)
  }

  tags = local.tags

  lifecycle {
    precondition {
      condition     = length(local.allowlists_in_other_subscriptions) == 0
      error_message = "The hook allowlists ${join(", ", local.allowlists_in_other_subscriptions)} are for VMs in another subscription: apply them with a provider for that subscription (docs/azure-deploy.md, Hook allowlists)."
    }
  }
}
