variable "name" {
  description = "The deployment's name (<name_prefix>-<policy_name>)."
  type        = string
}

variable "run_hook_document" {
  description = "Name of the document that runs one hook through the guest hook runner."
  type        = string
}

variable "install_runner_document" {
  description = "Name of the document that installs the guest hook runner."
  type        = string
}

variable "run_hook_content" {
  description = "The run-hook document (JSON), its runner hash filled in."
  type        = string
}

variable "install_runner_content" {
  description = "The install-runner document (JSON), its runner hash filled in."
  type        = string
}

variable "install_hooks_document" {
  description = "Name of the document that installs a hook allowlist."
  type        = string
}

variable "install_hooks_content" {
  description = "The install-hooks document (JSON)."
  type        = string
}

variable "allowlists" {
  description = "The hook allowlists of this region's members, by name: the S3 URL and SHA-256 of each, and the State Manager targets of its instances (the root module's local.allowlists)."
  type = map(object({
    region = string
    key    = string
    url    = string
    sha256 = string
    targets = list(object({
      key    = string
      values = list(string)
    }))
  }))
  default = {}
}

variable "runner_url" {
  description = "HTTPS URL of the runner object in S3."
  type        = string
}

variable "runner_sha256" {
  description = "SHA-256 of the runner: the association installs only this file."
  type        = string
}

variable "library_url" {
  description = "HTTPS URL of the hook library object (quiesce_hooks.py) in S3."
  type        = string
}

variable "library_sha256" {
  description = "SHA-256 of the hook library: the association installs only this file."
  type        = string
}

variable "instance_tag" {
  description = "The tag of the instances the runner is installed on."
  type = object({
    key   = string
    value = string
  })
}

variable "association_schedule" {
  description = "How often State Manager re-applies the installation."
  type        = string
  default     = "rate(1 day)"
}
