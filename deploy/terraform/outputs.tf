output "ecr_repositories" {
  description = "Repository URLs by component."
  value       = { for k, r in aws_ecr_repository.component : k => r.repository_url }
}

output "router_private_ip" {
  description = "The gateway address compute images are built with (GATEWAY_ADDRESS)."
  value       = aws_instance.router.private_ip
}

output "compute_instance_ids" {
  value = aws_instance.compute[*].id
}

output "github_role_arns" {
  description = "Set as AWS_BUILD_ROLE_ARN, AWS_PACKAGE_ROLE_ARN and AWS_DEPLOY_ROLE_ARN repository variables."
  value       = { for k, r in aws_iam_role.github : k => r.arn }
}
