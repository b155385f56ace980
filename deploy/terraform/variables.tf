variable "region" {
  description = "AWS region."
  type        = string
}

variable "vpc_id" {
  description = "VPC for the hosts."
  type        = string
}

variable "subnet_id" {
  description = "Subnet for the hosts (private; egress through NAT for ECR and SSM)."
  type        = string
}

variable "client_cidrs" {
  description = "Networks allowed to reach the relay/gateway and the log's read API."
  type        = list(string)
}

variable "router_instance_type" {
  description = "Instance type of the router host (gateway and log server)."
  type        = string
  default     = "m6i.large"
}

variable "compute_instance_type" {
  description = "Instance type of the compute hosts; must support Nitro Enclaves."
  type        = string
  default     = "m6i.2xlarge"
}

variable "compute_count" {
  description = "Number of compute hosts."
  type        = number
  default     = 1
}

variable "ami_id" {
  description = "Amazon Linux 2023 AMI with the SSM agent (compute hosts also need aws-nitro-enclaves-cli)."
  type        = string
}

variable "github_repository" {
  description = "owner/name of the repository whose workflows may assume the build and deploy roles."
  type        = string
}

variable "github_oidc_provider_arn" {
  description = "ARN of the account's GitHub Actions OIDC identity provider."
  type        = string
}
